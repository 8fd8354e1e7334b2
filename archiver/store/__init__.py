"""Object-store ports and their adapters (local folder, S3/MinIO) plus working state."""
