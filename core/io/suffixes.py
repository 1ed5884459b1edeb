"""The file suffixes read as frames and as videos: known without PyAV, so that training (on a machine without it)
can list a folder of clips."""

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")  # read as videos (batch inputs, backgrounds)
