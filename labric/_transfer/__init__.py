"""The transfer engine: uploads and downloads, checksums and resume journals."""
