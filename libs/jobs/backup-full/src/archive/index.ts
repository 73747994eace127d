export * from './archive-disk.reader';
export * from './archive.errors';
export * from './archive.layout';
export * from './archive.manifest';
export * from './archive.sealer';
export * from './archive.store';
export * from './archive.segmenter';
export * from './archive.verifier';
