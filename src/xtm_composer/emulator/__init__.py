"""An OpenCTI-compatible platform emulator for demos and tests."""
