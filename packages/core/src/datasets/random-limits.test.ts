// Random data refuses a declared shape no allocation could hold, by input name, before allocating.
import { openDataset, firstSample } from './open';

describe('random data and absurd shapes', () => {
  it('makes data for a real shape', async () => {
    const s = await firstSample(openDataset('random', { inputs: [{ name: 'x', dtype: 'float32', shape: [1, 4] }] }));
    expect(s.inputs.x.dims).toEqual([1, 4]);
  });

  it('refuses a 2^40-element input with E_DATASET_INVALID naming it', () => {
    expect(() => openDataset('random', { inputs: [{ name: 'x', dtype: 'float32', shape: [2 ** 40, 4] }] })).toThrow(expect.objectContaining({ code: 'E_DATASET_INVALID', message: expect.stringContaining('"x"') }));
  });
});
