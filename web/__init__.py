"""The browser face (`python -m web.app`); Ctrl-C while it loads ends it in one line (`ctrl_c_ends_start`)."""

from core.io.command import ctrl_c_ends_start

ctrl_c_ends_start()
