"""Work that can wait: the job store (files, batches) and the batch runner."""
