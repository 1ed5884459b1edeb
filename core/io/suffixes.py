"""The file suffixes read as frames and as videos: known without PyAV, so that training (on a machine without it)
can list a folder of clips."""

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
# read as videos (batch inputs, backgrounds, uploads): the common containers, camcorders' and phones' among them
# (not .ts, TypeScript's too), in the order that picks, of two videos named alike, the one named after it
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mts", ".m2ts", ".3gp", ".mpg", ".mpeg", ".flv",
                  ".wmv", ".ogv")
