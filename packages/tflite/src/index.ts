// @qforge/tflite: the TensorFlow Lite flatbuffer format, written from (and read into) plain objects.
export * from './model';
