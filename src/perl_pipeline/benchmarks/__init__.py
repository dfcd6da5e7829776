"""What a benchmark is (no Kedro): its spec, the reader of each on-disk layout, the index, validation,
the few-shot draws and the image transforms."""
