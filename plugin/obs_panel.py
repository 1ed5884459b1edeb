"""MobileVOS control panel for OBS Studio: load this file in OBS → Tools → Scripts (Python).

It runs inside OBS's own Python (obspython, standard library only) and drives `python -m plugin.obs` as a
child process: pick the source, the mode, the first annotation (mask PNG or box), the backend; Start / Stop
(also as the hotkeys "MobileVOS: start tracking" / "MobileVOS: stop tracking", which obs-websocket's
TriggerHotkeyByName can press); the Status line shows the tracker's state, FPS and latency, read from the
status file the plugin keeps. Stopping sends Ctrl-C, so the plugin puts the scene back as it was.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import obspython as obs

REPO = Path(__file__).resolve().parent.parent
MODES = ("mask", "blur", "hide")
BACKENDS = ("onnx", "torch", "onnx-int8")
STOP_WAIT_S = 10.0
LOG_NAME = "plugin.log"  # the tracker's output, beside its status file

settings_ref = None           # the script's obs_data settings (owned by OBS)
process: subprocess.Popen | None = None
status_path: Path | None = None  # in the run's own temporary folder, with its log: removed with the next start
stopping = False  # Stop was pressed and the tracker has not ended yet
last_state = ""
hotkeys: dict[str, int] = {}


def script_description() -> str:
    return ("<b>MobileVOS</b>: mask, blur or hide an object of a source live, no green screen. Needs OBS → "
            "Tools → WebSocket Server Settings → Enable WebSocket server.")


def script_defaults(settings) -> None:
    obs.obs_data_set_default_string(settings, "mode", "mask")
    obs.obs_data_set_default_string(settings, "backend", "onnx")
    obs.obs_data_set_default_string(settings, "python", default_python())
    obs.obs_data_set_default_int(settings, "port", 4455)
    obs.obs_data_set_default_string(settings, "status", "stopped")


def default_python() -> str:
    """The repository's virtual environment, where MobileVOS and its dependencies are installed."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else "python3"


def video_sources() -> list[str]:
    """Names of the sources that have video, sorted."""
    sources = obs.obs_enum_sources()
    try:
        return sorted(obs.obs_source_get_name(s) for s in sources
                      if obs.obs_source_get_output_flags(s) & obs.OBS_SOURCE_VIDEO)
    finally:
        obs.source_list_release(sources)


def script_properties():
    props = obs.obs_properties_create()
    source = obs.obs_properties_add_list(props, "source", "Source", obs.OBS_COMBO_TYPE_LIST,
                                         obs.OBS_COMBO_FORMAT_STRING)
    for name in video_sources():
        obs.obs_property_list_add_string(source, name, name)
    mode = obs.obs_properties_add_list(props, "mode", "Mode", obs.OBS_COMBO_TYPE_LIST, obs.OBS_COMBO_FORMAT_STRING)
    for name in MODES:
        obs.obs_property_list_add_string(mode, name, name)
    obs.obs_properties_add_path(props, "mask", "First mask (PNG)", obs.OBS_PATH_FILE, "PNG (*.png)", None)
    obs.obs_properties_add_text(props, "box", "or object box x,y,w,h", obs.OBS_TEXT_DEFAULT)
    backend = obs.obs_properties_add_list(props, "backend", "Backend", obs.OBS_COMBO_TYPE_LIST,
                                          obs.OBS_COMBO_FORMAT_STRING)
    for name in BACKENDS:
        obs.obs_property_list_add_string(backend, name, name)
    obs.obs_properties_add_path(props, "python", "Python with MobileVOS", obs.OBS_PATH_FILE, "", None)
    obs.obs_properties_add_int(props, "port", "WebSocket port", 1, 65535, 1)
    obs.obs_properties_add_text(props, "password", "WebSocket password", obs.OBS_TEXT_PASSWORD)
    obs.obs_properties_add_button(props, "start", "Start tracking", lambda *_: start() or True)
    obs.obs_properties_add_button(props, "stop", "Stop tracking", lambda *_: stop() or True)
    obs.obs_properties_add_text(props, "status", "Status", obs.OBS_TEXT_INFO)
    return props


def script_load(settings) -> None:
    global settings_ref
    settings_ref = settings
    for name, label, action in (("mobilevos.start", "MobileVOS: start tracking", start),
                                ("mobilevos.stop", "MobileVOS: stop tracking", stop)):
        hotkeys[name] = obs.obs_hotkey_register_frontend(name, label, lambda pressed, act=action: pressed and act())
        saved = obs.obs_data_get_array(settings, name)
        obs.obs_hotkey_load(hotkeys[name], saved)
        obs.obs_data_array_release(saved)
    obs.timer_add(poll, 500)
    report("stopped", "loaded; pick a source and press Start")


def script_save(settings) -> None:
    for name, hotkey in hotkeys.items():
        saved = obs.obs_hotkey_save(hotkey)
        obs.obs_data_set_array(settings, name, saved)
        obs.obs_data_array_release(saved)


def script_unload() -> None:
    obs.timer_remove(poll)
    stop(wait_s=STOP_WAIT_S)
    remove_last_run()


def remove_last_run() -> None:
    """Remove the last run's folder (status file and log), once its tracker has ended."""
    if status_path is not None and (process is None or process.poll() is not None):
        shutil.rmtree(status_path.parent, ignore_errors=True)


def command(settings) -> list[str]:
    """`python -m plugin.obs ...` for the current settings; raises ValueError naming what is missing."""
    get = lambda key: obs.obs_data_get_string(settings, key).strip()  # noqa: E731
    if not get("source"):
        raise ValueError("pick a source")
    if bool(get("mask")) == bool(get("box")):
        raise ValueError("give either a first mask PNG or an object box x,y,w,h")
    annotation = ["--mask", get("mask")] if get("mask") else ["--box", get("box")]
    return [get("python") or default_python(), "-m", "plugin.obs", "--source", get("source"), "--mode",
            get("mode"), *annotation, "--backend", get("backend"), "--port",
            str(obs.obs_data_get_int(settings, "port")), "--wait-for-source", "--status-file", str(status_path)]


def start() -> None:
    """Start the tracker for the chosen source (nothing to do while one runs)."""
    global process, status_path, stopping
    if process is not None and process.poll() is None:
        return
    remove_last_run()
    stopping = False
    work = Path(tempfile.mkdtemp(prefix="mobilevos-panel-"))
    status_path = work / "status.json"
    try:
        argv = command(settings_ref)
    except ValueError as error:
        report("error", str(error))
        return
    env = dict(os.environ, OBS_WEBSOCKET_PASSWORD=obs.obs_data_get_string(settings_ref, "password"))
    with open(work / LOG_NAME, "w") as log:
        process = subprocess.Popen(argv + ["--work-dir", str(work)], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    report("starting", f"pid {process.pid}, log {work / LOG_NAME}")


def stop(wait_s: float = 0.0) -> None:
    """Ask the tracker to stop as Ctrl-C does (it restores the scene); wait up to `wait_s` for it."""
    global stopping
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    stopping = True
    report("stopping", f"pid {process.pid}")
    if wait_s:
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            process.kill()


def poll() -> None:
    """Timer: show the plugin's status file (state, FPS, latency), or how its process ended."""
    if process is None or status_path is None:
        return
    try:
        data = json.loads(status_path.read_text())
    except (OSError, ValueError):
        data = {"state": "starting"}
    if process.poll() is not None and data["state"] not in ("stopped", "error"):
        data = {"state": "error", "message": exit_message(status_path.parent / LOG_NAME, process.returncode)}
    elif stopping and data["state"] not in ("stopped", "error"):
        return  # "stopping" stands until the tracker says it stopped (its status file still says tracking)
    report(data["state"], status_message(data))


def status_message(data: dict) -> str:
    """The Status line's text for the plugin's status file: while tracking its FPS, latency and frames, and the
    last word on an annotation sent meanwhile (taken, unusable, ignored); otherwise its message."""
    if data["state"] != "tracking" or "fps" not in data:
        return data.get("message", "")
    message = f"{data['fps']:.1f} FPS, latency {data['latency_ms']} ms, {data['frames']} frames"
    return f"{message}; {data['annotation']}" if data.get("annotation") else message


def exit_message(log: Path, code: int) -> str:
    """Why the tracker ended without a status (a flag it refused, say): its log's last `error:` line, less the
    command line's "; see python -m plugin.obs --help" (the panel has no command line), else its exit code."""
    try:
        errors = [line for line in log.read_text(errors="replace").splitlines() if "error: " in line]
    except OSError:
        errors = []
    if not errors:
        return f"the tracker exited with code {code}"
    message = errors[-1].split("error: ", 1)[1].strip()
    reason, hint = message.rsplit("; see ", 1) if "; see " in message else (message, "")
    return reason if hint.endswith(" --help") else message


def report(state: str, message: str = "") -> None:
    """Show the status in the panel and, when the state changes, in OBS's log."""
    global last_state
    line = f"{state}: {message}" if message else state
    if settings_ref is not None:
        obs.obs_data_set_string(settings_ref, "status", line)
    if state != last_state:
        print(f"MobileVOS status: {line}")
        last_state = state
