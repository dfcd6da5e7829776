"""Generic acquisition that knows nothing of PERL: resumable checksummed downloads, Google Drive and
safe archive extraction."""
