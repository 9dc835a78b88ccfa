"""lean_export: int8 TFLite export with metadata and a verification report (CLI `lean-export`)."""
