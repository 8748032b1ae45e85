"""Video files in, detections out (--mode=detect): feature extraction
(dgam_tf/features/), a trained model (dgam_tf/models/) and localization
(dgam_tf/localization/) joined for single videos, with a table, ActivityNet
result JSON and timeline pictures (dgam_tf/visualization/)."""
