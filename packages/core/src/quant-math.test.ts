import { dequantizeTensor, quantizeBias, quantizePerAxis, quantizeTensor, quantRange, scaleFromRange } from './quant-math';

describe('quantRange', () => {
  it('gives the integer ranges of each type', () => {
    expect(quantRange({ type: 'int8' })).toEqual({ qmin: -128, qmax: 127 });
    expect(quantRange({ type: 'int8', symmetric: true })).toEqual({ qmin: -127, qmax: 127 });
    expect(quantRange({ type: 'uint8' })).toEqual({ qmin: 0, qmax: 255 });
    expect(quantRange({ type: 'int8', reduceRange: true, symmetric: true })).toEqual({ qmin: -63, qmax: 63 });
    expect(quantRange({ type: 'uint8', reduceRange: true })).toEqual({ qmin: 0, qmax: 127 });
    expect(quantRange({ type: 'int16' })).toEqual({ qmin: -32768, qmax: 32767 });
    expect(quantRange({ type: 'int4', symmetric: true })).toEqual({ qmin: -7, qmax: 7 });
  });
});

describe('scaleFromRange', () => {
  it('maps an asymmetric uint8 range with an exact zero', () => {
    const p = scaleFromRange(-1, 3, { type: 'uint8' });
    expect(p.scale).toBeCloseTo(4 / 255, 9);
    expect(p.zeroPoint).toBe(64);
    // Zero is representable exactly.
    expect((p.zeroPoint - p.zeroPoint) * p.scale).toBe(0);
  });
  it('uses zero point 0 for symmetric signed types', () => {
    const p = scaleFromRange(-0.5, 2, { type: 'int8', symmetric: true });
    expect(p.zeroPoint).toBe(0);
    expect(p.scale).toBeCloseTo(2 / 127, 9);
  });
  it('widens ranges that exclude zero', () => {
    const p = scaleFromRange(2, 4, { type: 'uint8' });
    expect(p.zeroPoint).toBe(0);
    expect(p.scale).toBeCloseTo(4 / 255, 9);
  });
  it('handles an all-zero tensor and rejects non-finite ranges', () => {
    expect(scaleFromRange(0, 0, { type: 'int8', symmetric: true })).toEqual({ scale: 1, zeroPoint: 0 });
    expect(() => scaleFromRange(NaN, 1, { type: 'int8' })).toThrow(expect.objectContaining({ code: 'E_INVALID_OPTION' }));
  });
});

describe('quantize / dequantize', () => {
  it('round-trips within half a step and saturates outside the range', () => {
    const data = Float32Array.from([-1, -0.3, 0, 0.25, 0.99, 5]);
    const opts = { type: 'int8' as const };
    const p = scaleFromRange(-1, 1, opts);
    const q = quantizeTensor(data, p, opts);
    const back = dequantizeTensor(q, p);
    for (let i = 0; i < 5; i++) expect(Math.abs(back[i] - data[i])).toBeLessThanOrEqual(p.scale / 2 + 1e-7);
    expect(q[5]).toBe(127);
  });
  it('quantizes per output channel with symmetric int8 weights', () => {
    // Two output channels of 3 weights each; channel 1 is 10x larger.
    const w = Float32Array.from([0.1, -0.2, 0.05, 1, -2, 0.5]);
    const r = quantizePerAxis(w, [2, 3], 0, { type: 'int8', symmetric: true });
    expect(Array.from(r.zeroPoints)).toEqual([0, 0]);
    expect(r.scales[1] / r.scales[0]).toBeCloseTo(10, 5);
    expect(r.values[1]).toBe(-127);
    expect(r.values[4]).toBe(-127);
  });
  it('makes int32 bias with scale s_in*s_w', () => {
    const b = quantizeBias([0.5, -1], 0.01, [0.1, 0.2]);
    expect(Array.from(b.values)).toEqual([500, -500]);
    expect(b.scales[1]).toBeCloseTo(0.002, 9);
  });
});
