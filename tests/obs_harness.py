"""A real OBS Studio for the tests: started headless under Xvfb with software OpenGL, in its own HOME.

`HeadlessOBS` writes a fresh OBS configuration (WebSocket server on a free port, optional password) into a
temporary HOME, starts `obs` under `xvfb-run`, waits until the WebSocket port answers, and stops the whole
process group it started. It can be stopped and started again on the same port and HOME (a restart).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OBS_START_TIMEOUT_S = 300.0  # a loaded 2-core machine with software GL needs 10–25 s, with both cores busy minutes
CANVAS = (1280, 720)  # (width, height) of OBS's base and output canvas


def obs_available() -> bool:
    """True when Debian's `obs` and `xvfb-run` are installed."""
    return shutil.which("obs") is not None and shutil.which("xvfb-run") is not None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on `host:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def _global_ini(port: int, password: str) -> str:
    return (
        "[General]\nFirstRun=true\n"
        "[Basic]\nProfile=Untitled\nProfileDir=Untitled\nSceneCollection=Untitled\nSceneCollectionFile=Untitled\n"
        "[OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\n"
        f"ServerPort={port}\nAlertsEnabled=false\n"
        f"AuthRequired={'true' if password else 'false'}\nServerPassword={password}\n"
    )


def _basic_ini(fps: int) -> str:
    width, height = CANVAS
    return (
        "[General]\nName=Untitled\n"
        f"[Video]\nBaseCX={width}\nBaseCY={height}\nOutputCX={width}\nOutputCY={height}\n"
        f"FPSType=1\nFPSInt={fps}\n"
    )


@dataclass
class HeadlessOBS:
    """One OBS Studio process tree (xvfb-run → Xvfb + obs) with its own HOME under `home`."""

    home: Path
    port: int
    password: str = ""
    fps: int = 30
    show_window: bool = False  # keep OBS's main window on the (virtual) screen, for screenshots
    process: subprocess.Popen | None = None

    def write_config(self) -> None:
        """Write global.ini (WebSocket settings) and the profile's basic.ini (1280×720 at `fps`)."""
        config = self.home / ".config" / "obs-studio"
        (config / "basic" / "profiles" / "Untitled").mkdir(parents=True, exist_ok=True)
        (config / "global.ini").write_text(_global_ini(self.port, self.password))
        (config / "basic" / "profiles" / "Untitled" / "basic.ini").write_text(_basic_ini(self.fps))

    @property
    def collection_file(self) -> Path:
        """The scene collection OBS saves (after each change that adds or removes items) and loads at start."""
        return self.home / ".config" / "obs-studio" / "basic" / "scenes" / "Untitled.json"

    def start(self, timeout_s: float = OBS_START_TIMEOUT_S) -> None:
        """Start OBS and return once its WebSocket port accepts connections; raises RuntimeError otherwise.
        `--multi`: without it, an OBS started while another runs (any HOME) waits on an "already running" dialog."""
        if not (self.home / ".config" / "obs-studio" / "global.ini").exists():
            self.write_config()
        env = dict(os.environ, HOME=str(self.home), LIBGL_ALWAYS_SOFTWARE="1")
        log = open(self.home / "obs.log", "ab")
        self.process = subprocess.Popen(
            ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", "obs", "--disable-shutdown-check", "--disable-updater",
             "--multi"]
            + ([] if self.show_window else ["--minimize-to-tray"]),
            env=env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"OBS exited with code {self.process.returncode}; see {self.home / 'obs.log'}")
            if port_open(self.port):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"OBS did not open port {self.port} within {timeout_s:.0f} s; see {self.home / 'obs.log'}")

    def stop(self, kill: bool = False) -> None:
        """Stop the process group this object started (SIGKILL when `kill`, as a crash would) and wait for it."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def display(self) -> tuple[str, str]:
        """The X display (":99") of the Xvfb that xvfb-run started for this OBS, and its Xauthority file."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == self.process.pid and args[0].endswith(b"Xvfb") and len(args) > 1:
                auth = args[args.index(b"-auth") + 1].decode() if b"-auth" in args else ""
                return args[1].decode(), auth
        raise RuntimeError("no Xvfb found under this OBS's xvfb-run")

    def __enter__(self) -> "HeadlessOBS":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "judo"
CLIP_SOURCE = "clip"


def write_clip(path: Path, fps: int = 10, size: tuple[int, int] | None = None) -> Path:
    """Encode the bundled judo frames (16 frames, 854×480, or resized to `size` (w, h)) into an H.264 MP4."""
    import cv2

    from core.io.video import VideoWriter, open_video

    with open_video(SAMPLE) as reader:
        size = size or (reader.info.width, reader.info.height)
        with VideoWriter(path, fps, size) as writer:
            for frame in reader:
                writer.write(cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA))
    return path


def add_clip_source(port: int, clip: Path, password: str = "", scene: str = "Scene", name: str = CLIP_SOURCE) -> None:
    """Add a looping media source `name` playing `clip` to `scene`, at the canvas's top-left (nothing to do
    when OBS restored it from its saved scene collection)."""
    import obsws_python as obsws

    client = obsws.ReqClient(host="127.0.0.1", port=port, password=password, timeout=30)
    try:
        if name in (i["inputName"] for i in client.get_input_list().inputs):
            return
        client.create_input(scene, name, "ffmpeg_source",
                            {"local_file": str(clip), "looping": True, "is_local_file": True}, True)
    finally:
        client.disconnect()


def remove_source(port: int, name: str, password: str = "") -> None:
    """Remove the input `name` from OBS."""
    import obsws_python as obsws

    client = obsws.ReqClient(host="127.0.0.1", port=port, password=password, timeout=30)
    try:
        client.remove_input(name)
    finally:
        client.disconnect()


def grab_display(display: tuple[str, str], path: Path) -> None:
    """Save what the X display (name, Xauthority) shows as a PNG, read through FFmpeg's x11grab in PyAV."""
    import av
    from PIL import Image

    os.environ["XAUTHORITY"] = display[1]
    with av.open(display[0], format="x11grab", options={"video_size": "1280x800"}) as screen:
        frame = next(screen.decode(video=0))
        Image.fromarray(frame.to_ndarray(format="rgb24")).save(path)


def screenshots(out_dir: Path, home: Path) -> None:
    """docs/obs/: OBS's window and its program output while the plugin masks the judo clip (after 8 frames)."""
    import base64

    from core.inference.tracker import Tracker
    from plugin.session import Annotation, LiveSession, SessionConfig
    from plugin.stage import Connection, ObsStage

    out_dir.mkdir(parents=True, exist_ok=True)
    with HeadlessOBS(home, free_port(), show_window=True) as obs:
        add_clip_source(obs.port, write_clip(home / "judo.mp4"))
        stage = ObsStage(Connection(port=obs.port), CLIP_SOURCE, None, home / "work")

        def snap(result) -> None:
            time.sleep(1.0)  # let OBS render a few frames with the new mask
            grab_display(obs.display(), out_dir / "obs-window.png")
            data = stage.call("GetSourceScreenshot", sourceName="Scene", imageFormat="png")["imageData"]
            (out_dir / "program-output.png").write_bytes(base64.b64decode(data.split(",", 1)[1]))

        LiveSession(stage, Tracker(), Annotation(mask_path=SAMPLE / "masks" / "00000.png"),
                    SessionConfig(frames=8, wait_for_source=True), on_frame=snap).run()


BENCH_SOURCES = ((640, 360), (1280, 720))  # (w, h) of the clips the benchmark masks, one at a time


def bench(port: int, home: Path, frames: int, plugin_args: list[str]) -> None:
    """`plugin.obs --bench` on a looping judo clip at each of `BENCH_SOURCES`; prints one Markdown table."""
    from plugin.obs import BENCH_HEADER, bench_source, build_parser

    rows = []
    for size in BENCH_SOURCES:
        name = f"clip {size[0]}x{size[1]}"
        add_clip_source(port, write_clip(home / f"judo-{size[0]}.mp4", size=size), name=name)
        args = build_parser().parse_args(["--port", str(port), "--source", name, "--wait-for-source",
                                          "--mask", str(SAMPLE / "masks" / "00000.png"), "--bench",
                                          "--bench-frames", str(frames), *plugin_args])
        row = bench_source(args)
        if isinstance(row, int):  # stopped by a signal: no result, its status
            raise SystemExit(row)
        rows.append(row)
        remove_source(port, name)
    print(BENCH_HEADER)
    print("\n".join(rows))


EDGE_CAPTURES = ((427, 240), (640, 360), (1280, 720))  # (w, h) captures of a 1280×720 source


def edge_cost(source: tuple[int, int] = (1280, 720)) -> None:
    """What capturing small costs at the mask's edges: the judo clip at `source` size is tracked from captures
    of each `EDGE_CAPTURES` size; each mask is stretched to `source` bilinearly, as OBS's mask filter samples
    it, and compared with the mask tracked from the full-size capture (J, and boundary F at 1 and 3 px)."""
    import cv2

    from core.evaluation.metrics import boundary_f, region_similarity
    from core.inference.tracker import Tracker
    from core.inference.settings import TrackerConfig
    from core.io.masks import read_mask, resize_labels
    from core.io.video import open_video

    with open_video(SAMPLE) as reader:
        frames = [cv2.resize(f.image, source, interpolation=cv2.INTER_AREA) for f in reader]
    first = read_mask(SAMPLE / "masks" / "00000.png")

    def shown(capture: tuple[int, int]) -> list[np.ndarray]:
        tracker = Tracker(TrackerConfig(backend="onnx"))
        out = []
        for i, frame in enumerate(frames):
            small = cv2.resize(frame, capture, interpolation=cv2.INTER_AREA)
            labels = tracker.step(small, resize_labels(first, small.shape[:2]) if i == 0 else None)
            alpha = np.where(labels > 0, np.uint8(255), np.uint8(0))
            out.append(cv2.resize(alpha, source, interpolation=cv2.INTER_LINEAR) > 127)
        return out

    reference = shown(source)
    print(f"| capture of a {source[0]}×{source[1]} source | J | F (1 px) | F (3 px) |\n|---|---|---|---|")
    for capture in EDGE_CAPTURES:
        masks = shown(capture)
        score = lambda fn, *a: float(np.mean([fn(m, r, *a) for m, r in zip(masks, reference)]))  # noqa: E731
        print(f"| {capture[0]}×{capture[1]} | {score(region_similarity):.3f} | {score(boundary_f, 1):.3f} | "
              f"{score(boundary_f, 3):.3f} |")


def set_up(stage, timeout_s: float) -> None:
    """`stage.setup()` (a `plugin.stage.ObsStage`) once its media source plays: until its first frame it has no
    size (NoFrame). Raises RuntimeError after `timeout_s`."""
    from plugin.stage import NoFrame

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            stage.setup()
            return
        except NoFrame:
            if time.monotonic() > deadline:
                raise RuntimeError(f"source {stage.source!r} had no picture within {timeout_s:.0f} s") from None
            time.sleep(0.1)


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) spent so far by the live processes of process group `pgid`."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split() if proc.name.isdigit() else []
        except OSError:
            continue
        if fields and int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def obs_cost(home: Path, seconds: float = 6.0) -> None:
    """What OBS itself spends, as cores of its process group (OBS + Xvfb), for each of `BENCH_SOURCES` playing:
    alone, with one loop taking screenshots at the tracker's size as fast as OBS answers (and that rate), with
    the plugin's rig, with the rig while one loop takes screenshots or shows masks, and with the same mask filter
    put on the source itself instead of the rig."""
    import threading

    from plugin.stage import FILTER_KIND, FILTER_NAME, Connection, ObsStage, tracker_capture_size

    def measure(obs: HeadlessOBS, work=None) -> str:
        stop, done = threading.Event(), [0]

        def loop() -> None:
            while not stop.is_set():
                work()
                done[0] += 1
        thread = threading.Thread(target=loop) if work else None
        if thread:
            thread.start()
        time.sleep(1.0)  # settle
        cpu, count, start = group_cpu_s(obs.process.pid), done[0], time.monotonic()
        time.sleep(seconds)
        cores = (group_cpu_s(obs.process.pid) - cpu) / (time.monotonic() - start)
        rate = (done[0] - count) / (time.monotonic() - start)
        stop.set()
        if thread:
            thread.join()
        return f"{cores:.2f}" + (f" ({rate:.0f}/s)" if work else "")

    print("| source | OBS cores: playing | playing, screenshots in a loop (rate) | + rig | + rig, screenshots (rate) | "
          "+ rig, masks shown in a loop (rate) | no rig, the mask filter on the source itself |")
    print("|---|---|---|---|---|---|---|")
    with HeadlessOBS(home, free_port()) as obs:
        for size in BENCH_SOURCES:
            name = f"clip {size[0]}x{size[1]}"
            add_clip_source(obs.port, write_clip(home / f"judo-{size[0]}.mp4", size=size), name=name)
            capture = tracker_capture_size(size, 240)
            stage = ObsStage(Connection(port=obs.port), name, None, home / "work", capture_size=capture)
            stage.connect()
            set_up(stage, OBS_START_TIMEOUT_S)
            stage.restore()
            cells = [measure(obs), measure(obs, stage.grab)]
            stage.setup()
            alpha = np.full(capture[::-1], 255, np.uint8)
            cells += [measure(obs), measure(obs, stage.grab), measure(obs, lambda: stage.show(alpha))]
            stage.restore()
            stage.call("CreateSourceFilter", sourceName=name, filterName=FILTER_NAME, filterKind=FILTER_KIND,
                       filterSettings=stage.filter_settings())
            cells.append(measure(obs))
            stage.disconnect()
            remove_source(obs.port, name)
            print(f"| {size[0]}×{size[1]} | " + " | ".join(cells) + " |")


def main() -> int:
    """`python -m tests.obs_harness [--screenshots DIR]`: start a headless OBS and run `plugin.obs --bench`
    against a looping judo clip at 640×360 and at 1280×720 (or save screenshots of OBS with the masked source).
    Arguments after `--` go to `plugin.obs` (e.g. `-- --size 1280x720 --backend torch`)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m tests.obs_harness")
    parser.add_argument("--screenshots", type=Path, help="save screenshots of OBS into this folder instead")
    parser.add_argument("--edges", action="store_true", help="measure what small captures cost at mask edges")
    parser.add_argument("--obs-cost", action="store_true", help="measure the CPU that OBS itself uses")
    parser.add_argument("--frames", type=int, default=60, help="benchmark frames per source (default 60)")
    parser.add_argument("plugin_args", nargs="*", help="more plugin.obs options, after --")
    args = parser.parse_args()
    if args.edges:
        edge_cost()
        return 0
    with tempfile.TemporaryDirectory(prefix="mobilevos-obs-bench-") as tmp:
        home = Path(tmp)
        if args.screenshots:
            screenshots(args.screenshots, home)
            return 0
        if args.obs_cost:
            obs_cost(home)
            return 0
        with HeadlessOBS(home, free_port()) as obs:
            print(f"headless OBS {CANVAS[0]}×{CANVAS[1]} @ {obs.fps} FPS on port {obs.port}; load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            bench(obs.port, home, args.frames, args.plugin_args)
            print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
