-- Prediction: the scorer reads each device's last completed job before its window.
CREATE INDEX jobs_completed_by_device ON jobs (device_id, completed_at) WHERE status = 'completed';
