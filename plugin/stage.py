"""The OBS side of the live plugin: one obs-websocket v5 connection and the scene rig it keeps in OBS.

Why a wrapper scene: `GetSourceScreenshot` renders a source *with its filters*, so a mask filter on the source
itself would feed the tracker its own masked output. The rig therefore leaves the source untouched and adds
one level above it:

    user scene U:  ... S (hidden) [B: blurred background, blur mode only] W (in S's place) ...
    wrapper scene W = "<S> (MobileVOS)": S at the top-left, Image Mask/Blend filter "MobileVOS mask"

W's item in U copies S's transform, cropped to S's size, so the picture sits exactly where S was. Every new
mask is a grayscale PNG (white = visible) written atomically, then `SetSourceFilterSettings` makes OBS reload
it on its next frame; OBS stretches it to W, so the mask can be as small as the tracker's frames.

The rig is idempotent and found by names alone: `setup()` adopts a W, its items and its filter left by a run
that was killed or restored by OBS from its saved scene collection, and `restore()` puts U back as it was (S
visible again as W was, W and B removed), so it also cleans up after a crash or an OBS restart.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import obsws_python as obsws
from obsws_python.error import OBSSDKError, OBSSDKRequestError, OBSSDKTimeoutError
from websocket import WebSocketBadStatusException, WebSocketException

FILTER_NAME = "MobileVOS mask"
FILTER_KIND = "mask_filter_v2"
_NOT_READY = 207            # obs-websocket RequestStatus::NotReady (OBS still loading its scene collection)
_NOT_FOUND = 600            # obs-websocket RequestStatus::ResourceNotFound
_EXISTS = 601               # obs-websocket RequestStatus::ResourceAlreadyExists
_SETTLE_S = 10.0            # how long the rig waits for OBS to finish adding or removing one of its parts
_EVENTS = 1 | (1 << 2) | (1 << 3) | (1 << 7)  # EventSubscription General (custom events) | Scenes | Inputs (renames)
                                              # | SceneItems (the user taking the rig apart)
_TOP_LEFT = 5               # OBS_ALIGN_TOP | OBS_ALIGN_LEFT
SIZE_CHECK_S = 1.0          # how often a running rig asks OBS whether the source changed size (`check_size`)
_AUDIO_KINDS = {"pulse_input_capture", "pulse_output_capture", "alsa_input_capture", "jack_output_capture",
                "wasapi_input_capture", "wasapi_output_capture", "wasapi_process_output_capture",
                "coreaudio_input_capture", "coreaudio_output_capture", "sck_audio_capture"}  # inputs with no picture
_TRANSFORM_KEYS = ("positionX", "positionY", "rotation", "scaleX", "scaleY", "alignment", "boundsType",
                   "boundsAlignment", "boundsWidth", "boundsHeight")

logging.getLogger("obsws_python").setLevel(logging.CRITICAL)  # it logs every failed request with a traceback


class StageError(RuntimeError):
    """A problem with OBS that the user must fix; the message is one line naming the fix."""


class AuthFailed(StageError):
    """OBS refused the WebSocket password (not worth retrying)."""


class NotObs(StageError):
    """Something answers at the address, but not as OBS's WebSocket server (not worth retrying)."""


class RigRemoved(StageError):
    """The user removed a part of the rig in OBS while it was up (the run stops and puts the scene back)."""


class SourceResized(RigRemoved):
    """The source's size changed in OBS while the rig was up (another file, a camera's other resolution): the rig is
    placed for the old size, so the run stops and puts the scene back."""


class ObsUnavailable(StageError):
    """OBS is not reachable or the connection dropped (retry with back-off)."""


class SourceMissing(StageError):
    """The source is not in OBS (yet, or any more); `names` lists the sources that are."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


class RequestFailed(StageError):
    """OBS answered a request with an error status (`code` is obs-websocket's RequestStatus)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class NoFrame(StageError):
    """The source exists but has nothing to show yet (e.g. a media source that has not started)."""


@dataclass(frozen=True)
class Connection:
    """Where OBS's WebSocket server listens."""

    host: str = "127.0.0.1"
    port: int = 4455
    password: str = ""
    timeout: float = 10.0

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"


@dataclass(frozen=True)
class Placement:
    """Where the rig lives: the user's scene, S's item there, and the sizes that map masks onto W."""

    scene: str
    item_id: int
    source_size: tuple[int, int]  # (w, h) of S in its own pixels
    canvas: tuple[int, int]       # (w, h) of OBS's base canvas = the size of scene W
    fit: float                    # S's scale inside W (1 unless S is larger than the canvas)


WRAPPER_SUFFIX = " (MobileVOS)"
SCRATCH_PREFIX = "mobilevos-obs-"  # a run's own temporary folder for its images, in the system's temp folder


def wrapper_name(source: str) -> str:
    return f"{source}{WRAPPER_SUFFIX}"


def background_name(source: str) -> str:
    return f"{source} (MobileVOS background)"


def write_image_atomic(path: Path, image: np.ndarray, ext: str) -> None:
    """Encode `image` with OpenCV (`ext` like ".png") and move it into place, so readers never see half a file."""
    ok, data = cv2.imencode(ext, image, [cv2.IMWRITE_PNG_COMPRESSION, 1] if ext == ".png" else [])
    if not ok:
        raise StageError(f"{path}: OpenCV could not encode the image as {ext}")
    write_bytes_atomic(path, data.tobytes())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_scratch_folder(folder: Path) -> None:
    """Remove a run's scratch folder (`SCRATCH_PREFIX`, directly in the temp folder, ours) with the images the rig
    wrote there; any other folder, a --work-dir of the user's among them, is left alone."""
    if not (folder.name.startswith(SCRATCH_PREFIX) and folder.parent == Path(tempfile.gettempdir())
            and folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == os.getuid()):
        return
    for image in (*folder.glob("mask.png"), *folder.glob("background.jpg"), *folder.glob(".mask.*.png"),
                  *folder.glob(".background.*.jpg")):
        image.unlink(missing_ok=True)
    with suppress(OSError):
        folder.rmdir()


def describe_answer(error: Exception) -> str:
    """What a server that is not OBS's said, in a few words, from the error reading its answer raised."""
    if isinstance(error, WebSocketBadStatusException):
        return f"HTTP {error.status_code} to the WebSocket handshake"
    if isinstance(error, json.JSONDecodeError):
        return "its first message is not JSON"
    return "its first message is not obs-websocket v5's Hello"


def name_hint(name: str, sources: list[str], scenes: list[str]) -> str:
    """What a source name that OBS does not have probably meant: a source that differs only in case or
    surrounding spaces, or a scene (whose sources are what can be masked); "" when neither, or when `name` is one
    of `sources`."""
    if name in sources:
        return ""
    alike = [s for s in sources if s.strip().casefold() == name.strip().casefold()]
    if alike:
        return f" (did you mean {alike[0]!r}? names are exact)"
    if name in scenes:
        return f" ({name!r} is a scene: pass one of its sources, and --scene {name!r} to work in it)"
    return ""


def audio_only(kind: str | None) -> bool:
    """True for an OBS input kind that has sound but no picture to mask (a microphone, desktop audio)."""
    return kind in _AUDIO_KINDS


def source_label(name: str, kind: str | None) -> str:
    """`name` in a list of OBS's sources, followed by "(audio only)" when its input `kind` has no picture."""
    return f"{name} (audio only)" if audio_only(kind) else name


def mask_on_canvas(alpha: np.ndarray, placement: Placement) -> np.ndarray:
    """The mask for W: `alpha` (h, w) uint8 over S's area at the top-left, 0 elsewhere, in W's aspect ratio."""
    height, width = alpha.shape
    scale = width / (placement.source_size[0] * placement.fit)  # mask pixels per pixel of W
    canvas_w = max(width, round(placement.canvas[0] * scale))
    canvas_h = max(height, round(placement.canvas[1] * scale))
    if (canvas_w, canvas_h) == (width, height):
        return alpha
    out = np.zeros((canvas_h, canvas_w), np.uint8)  # (H, W)
    out[:height, :width] = alpha
    return out


def wrapper_transform(source: dict, placement: Placement) -> dict:
    """W's transform in U: S's own transform, with W cropped down to S's area so the picture lands in place."""
    fit = placement.fit
    width, height = placement.source_size
    out = {key: source[key] for key in _TRANSFORM_KEYS if key in source}
    if source.get("boundsType", "OBS_BOUNDS_NONE") == "OBS_BOUNDS_NONE":
        out.pop("boundsWidth", None)
        out.pop("boundsHeight", None)
    out["scaleX"], out["scaleY"] = source["scaleX"] / fit, source["scaleY"] / fit
    out["cropLeft"] = round(source["cropLeft"] * fit)
    out["cropTop"] = round(source["cropTop"] * fit)
    out["cropRight"] = round(source["cropRight"] * fit + placement.canvas[0] - width * fit)
    out["cropBottom"] = round(source["cropBottom"] * fit + placement.canvas[1] - height * fit)
    return out


def unwrapped_transform(wrapper: dict, inner: dict, canvas: tuple[int, int]) -> dict:
    """S's transform in U that shows what W's item (transform `wrapper`) shows, S being W's `inner` item (at scale
    fit, top-left): `wrapper_transform` undone."""
    fit = inner["scaleX"]
    width, height = inner["sourceWidth"], inner["sourceHeight"]
    out = {key: wrapper[key] for key in _TRANSFORM_KEYS if key in wrapper}
    if wrapper.get("boundsType", "OBS_BOUNDS_NONE") == "OBS_BOUNDS_NONE":
        out.pop("boundsWidth", None)
        out.pop("boundsHeight", None)
    out["scaleX"], out["scaleY"] = wrapper["scaleX"] * fit, wrapper["scaleY"] * fit
    out["cropLeft"] = round(wrapper["cropLeft"] / fit)
    out["cropTop"] = round(wrapper["cropTop"] / fit)
    out["cropRight"] = max(0, round((wrapper["cropRight"] - canvas[0] + width * fit) / fit))
    out["cropBottom"] = max(0, round((wrapper["cropBottom"] - canvas[1] + height * fit) / fit))
    return out


def moved_by_user(transform: dict, placed: dict) -> bool:
    """Whether an item's `transform` (as OBS gives it) differs from the one `placed` by more than OBS's rounding."""
    return any(abs(float(transform.get(key, value)) - float(value)) > 0.01
               for key, value in placed.items() if isinstance(value, (int, float)))


def background_transform(source: dict, image_size: tuple[int, int], source_size: tuple[int, int]) -> dict:
    """B's transform in U: S's transform rescaled for an image of `image_size` showing the same picture."""
    ratio = source_size[0] / image_size[0]  # pixels of S per pixel of B
    out = {key: source[key] for key in _TRANSFORM_KEYS if key in source}
    if source.get("boundsType", "OBS_BOUNDS_NONE") == "OBS_BOUNDS_NONE":
        out.pop("boundsWidth", None)
        out.pop("boundsHeight", None)
    out["scaleX"], out["scaleY"] = source["scaleX"] * ratio, source["scaleY"] * ratio
    for key in ("cropLeft", "cropTop", "cropRight", "cropBottom"):
        out[key] = round(source[key] / ratio)
    return out


def tracker_capture_size(source_size: tuple[int, int], short_side: int) -> tuple[int, int]:
    """(w, h) of `source_size` scaled so its short side is `short_side` (never up): the tracker's own size."""
    width, height = source_size
    scale = min(1.0, short_side / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class ObsStage:
    """One OBS connection for the rig and one for frames (so a screenshot can be in flight while a mask is
    shown), plus the rig for one source: grab frames, show masks, receive events."""

    def __init__(self, connection: Connection, source: str, scene: str | None, work_dir: Path,
                 capture_size: tuple[int, int] | None = None, jpeg_quality: int = 80, track_short_side: int = 240):
        self.connection = connection
        self.source = source
        self.scene = scene
        self.capture_size = capture_size  # None: the tracker's size (`track_short_side`), OBS scales the mask up
        self.track_short_side = track_short_side
        self.jpeg_quality = jpeg_quality
        self.mask_path = work_dir / "mask.png"
        self.background_path = work_dir / "background.jpg"
        self.placement: Placement | None = None
        self.events: queue.Queue[dict] = queue.Queue()
        self._client: obsws.ReqClient | None = None
        self._frames: obsws.ReqClient | None = None
        self._listener: obsws.EventClient | None = None
        self._wrapper = wrapper_name(source)
        self._background = background_name(source)
        self._background_ready = False
        self._shown_as: bool | None = None  # whether S was shown before this run's rig hid it (None: no rig yet)
        self._rig_items: set[tuple[str, int]] = set()  # (scene, item id) of W in U and of S in W while the rig is up
        self._taken_apart = False  # the listener heard the user remove a part of the rig
        self._inner: int | None = None  # S's item in W
        self._placed: dict | None = None  # the transform this run gave W's item in U (`moved_by_user`)
        self._size_checked = 0.0  # when `check_size` last asked OBS (time.monotonic)

    # -- connection ---------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the request, frame and event connections; raises AuthFailed, NotObs or ObsUnavailable."""
        options = dict(host=self.connection.host, port=self.connection.port,
                       password=self.connection.password, timeout=self.connection.timeout)
        try:
            self._client = obsws.ReqClient(**options)
            self._frames = obsws.ReqClient(**options)
            self._listener = obsws.EventClient(subs=_EVENTS, **options)
        except (WebSocketBadStatusException, json.JSONDecodeError, KeyError, TypeError) as error:
            self.disconnect()
            raise NotObs(
                f"{self.connection.url} answered, but not as OBS's WebSocket server ({describe_answer(error)}): check "
                "--host and --port against the port shown in OBS → Tools → WebSocket Server Settings") from error
        except OBSSDKError as error:
            self.disconnect()
            if isinstance(error, OBSSDKTimeoutError):
                raise ObsUnavailable(f"OBS at {self.connection.url} did not answer in time") from error
            refused = "refused the password" if self.connection.password else "asks for a password, and none was given"
            raise AuthFailed(
                f"OBS at {self.connection.url} {refused}: pass --password (or set OBS_WEBSOCKET_PASSWORD) "
                "to the one in OBS → Tools → WebSocket Server Settings") from error
        except (OSError, WebSocketException, ValueError) as error:
            self.disconnect()
            raise ObsUnavailable(
                f"no OBS WebSocket server at {self.connection.url} ({type(error).__name__}): start OBS and enable "
                "Tools → WebSocket Server Settings → Enable WebSocket server, or check --host and --port against "
                "the port shown there") from error
        self._listener.callback.register([self.on_custom_event, self.on_input_name_changed, self.on_scene_removed,
                                          self.on_scene_item_removed])

    def disconnect(self) -> None:
        """Close the connections without touching the scene (used when the connection is already gone)."""
        for client in (self._listener, self._frames, self._client):
            if client is not None:
                try:
                    client.disconnect()
                except (OSError, WebSocketException, RuntimeError):
                    pass
        self._client = self._frames = self._listener = None

    def on_custom_event(self, data) -> None:
        """obs-websocket CustomEvent (sent with BroadcastCustomEvent): its eventData is queued for the session."""
        self.events.put({key: getattr(data, key) for key in data.attrs()})

    def pending_events(self) -> list[dict]:
        """Custom events received since the last call."""
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    def on_input_name_changed(self, data) -> None:
        """Follow a rename of our source at once."""
        if data.old_input_name == self.source:
            self.source = data.input_name

    def on_scene_removed(self, data) -> None:
        """The user removed W, or the scene W is placed in, while the rig was up (`restore` forgets the rig before
        it removes W itself)."""
        if self._rig_items and data.scene_name in {self._wrapper, *(scene for scene, _ in self._rig_items)}:
            self._taken_apart = True

    def on_scene_item_removed(self, data) -> None:
        """The user removed W's item from U, or S's item from W, while the rig was up."""
        if (data.scene_name, data.scene_item_id) in self._rig_items:
            self._taken_apart = True

    def call(self, request: str, **data) -> dict:
        """One request on the rig's connection → its response data."""
        return self.send(self._client, request, data)

    def send(self, client: obsws.ReqClient | None, request: str, data: dict) -> dict:
        """One request on `client` → its response data; connection problems and a loading OBS become
        ObsUnavailable (retried with back-off), other error statuses RequestFailed."""
        if client is None:
            raise ObsUnavailable(f"not connected to OBS at {self.connection.url}")
        try:
            response = client.send(request, data or None, raw=True)
        except OBSSDKRequestError as error:
            if error.code == _NOT_READY:
                raise ObsUnavailable(f"OBS at {self.connection.url} is still loading its scenes") from error
            raise RequestFailed(str(error), error.code) from error
        except (OBSSDKError, OSError, WebSocketException, ValueError) as error:
            raise ObsUnavailable(f"lost the connection to OBS at {self.connection.url} ({type(error).__name__})") \
                from error
        return response or {}

    # -- frames -------------------------------------------------------------------------------------------
    def frame_size(self) -> tuple[int, int]:
        """(w, h) the screenshots are scaled to fit: `capture_size`, else the tracker's size for S."""
        if self.capture_size is not None:
            return self.capture_size
        if self.placement is None:
            raise StageError("grab() before setup()")
        return tracker_capture_size(self.placement.source_size, self.track_short_side)

    def grab(self) -> np.ndarray:
        """The source's current picture at `frame_size()` as (h, w, 3) RGB, on the frame connection (JPEG: the
        fastest). Safe to call from another thread than the rig's calls."""
        width, height = self.frame_size()
        for attempt in range(2):
            try:
                data = self.send(self._frames, "GetSourceScreenshot", dict(
                    sourceName=self.source, imageFormat="jpg", imageWidth=width, imageHeight=height,
                    imageCompressionQuality=self.jpeg_quality))["imageData"]
                break
            except RequestFailed as error:
                if error.code != _NOT_FOUND:
                    raise NoFrame(f"OBS has no picture for source {self.source!r} yet ({error})") from error
                if attempt or not self.follow_rename():
                    raise self.missing(on_frames=True) from error
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise NoFrame(f"OBS sent an unreadable screenshot of {self.source!r}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def follow_rename(self) -> bool:
        """If S was renamed (W still holds it under its new name), adopt the new name; True when it changed."""
        try:
            items = self.send(self._frames, "GetSceneItemList", dict(sceneName=self._wrapper))["sceneItems"]
        except RequestFailed:
            return False
        if len(items) == 1 and items[0]["sourceName"] != self.source:
            self.source = items[0]["sourceName"]
            return True
        return False

    def missing(self, on_frames: bool = False) -> SourceMissing:
        """The error for a source OBS does not have, listing the ones it has (asked on the frame connection when
        `on_frames`), with a hint when the name is a scene's or differs from a source's only in case or spaces."""
        kinds = self.input_kinds(on_frames)
        names = sorted(kinds)
        hint = name_hint(self.source, names, self.scene_names(on_frames))
        listing = ", ".join(source_label(name, kinds[name]) for name in names) or "(none)"
        return SourceMissing(f"OBS has no source named {self.source!r}{hint}; sources: {listing}", names)

    # -- the rig ------------------------------------------------------------------------------------------
    def setup(self) -> Placement:
        """Build the rig for S, adopting any part of it already in OBS, and show an all-white mask. OBS adds and
        removes sources on its own thread, so a part that is half there is waited for (up to `_SETTLE_S`)."""
        deadline = time.monotonic() + _SETTLE_S
        while True:
            try:
                return self.build_rig()
            except RequestFailed as error:
                if error.code not in (_NOT_FOUND, _EXISTS) or time.monotonic() > deadline:
                    raise StageError(f"could not build the rig in OBS ({error}); run with --restore, "
                                     "then start again") from error
                time.sleep(0.05)

    def build_rig(self) -> Placement:
        """One attempt at `setup()`: each part is adopted when there, created when not."""
        self._rig_items = set()  # the parts of a rig from before are adopted or removed: that is our doing
        self.follow_renamed_rig(self.scene_names())
        scene = self.find_scene()
        items = self.call("GetSceneItemList", sceneName=scene)["sceneItems"]
        item = next(i for i in items if i["sourceName"] == self.source)
        wrappers = [i for i in items if i["sourceName"] == self._wrapper]
        transform = item["sceneItemTransform"]
        source_size = (round(transform["sourceWidth"]), round(transform["sourceHeight"]))
        if min(source_size) <= 0:
            if audio_only(item.get("inputKind")):
                raise StageError(f"source {self.source!r} is audio only ({item['inputKind']}), it has no picture to "
                                 "mask; pick a video source (run --list)")
            if not item["sceneItemEnabled"]:
                raise NoFrame(f"source {self.source!r} is hidden in scene {scene!r} and has no picture: show it "
                              "(its eye in OBS's Sources list)")
            raise NoFrame(f"source {self.source!r} has no size yet (a media source that has not started?)")
        video = self.call("GetVideoSettings")
        canvas = (video["baseWidth"], video["baseHeight"])
        fit = min(1.0, canvas[0] / source_size[0], canvas[1] / source_size[1])
        placement = Placement(scene, item["sceneItemId"], source_size, canvas, fit)
        enabled = wrappers[0]["sceneItemEnabled"] if wrappers else item["sceneItemEnabled"]  # S as the user had it
        self.remove_background()
        inner = self.adopt_wrapper_scene(fit)
        outer = self.adopt_wrapper_item(scene, wrappers, enabled)
        self.call("SetSceneItemTransform", sceneName=scene, sceneItemId=outer,
                  sceneItemTransform=wrapper_transform(transform, placement))
        self._placed = wrapper_transform(transform, placement)
        self.place_above_source(scene, outer)
        self.mask_path.parent.mkdir(parents=True, exist_ok=True)
        write_image_atomic(self.mask_path, np.full((2, 2), 255, np.uint8), ".png")
        self.adopt_filter()
        self._shown_as = enabled
        self.call("SetSceneItemEnabled", sceneName=scene, sceneItemId=item["sceneItemId"], sceneItemEnabled=False)
        self.placement = placement
        self._rig_items, self._taken_apart, self._inner = {(scene, outer), (self._wrapper, inner)}, False, inner
        return placement

    def adopt_wrapper_scene(self, fit: float) -> int:
        """W exists holding exactly one item, S, at the top-left at scale `fit`; returns that item's id."""
        if self._wrapper not in self.scene_names():
            self.call("CreateScene", sceneName=self._wrapper)
        inner = self.call("GetSceneItemList", sceneName=self._wrapper)["sceneItems"]
        for extra in (i for i in inner if i["sourceName"] != self.source):
            self.call("RemoveSceneItem", sceneName=self._wrapper, sceneItemId=extra["sceneItemId"])
        ours = [i["sceneItemId"] for i in inner if i["sourceName"] == self.source]
        for extra in ours[1:]:
            self.call("RemoveSceneItem", sceneName=self._wrapper, sceneItemId=extra)
        item_id = ours[0] if ours else self.call("CreateSceneItem", sceneName=self._wrapper,
                                                 sourceName=self.source)["sceneItemId"]
        self.call("SetSceneItemTransform", sceneName=self._wrapper, sceneItemId=item_id, sceneItemTransform={
            "positionX": 0.0, "positionY": 0.0, "scaleX": fit, "scaleY": fit, "alignment": _TOP_LEFT,
            "rotation": 0.0, "boundsType": "OBS_BOUNDS_NONE", "cropLeft": 0, "cropTop": 0, "cropRight": 0,
            "cropBottom": 0})
        self.call("SetSceneItemEnabled", sceneName=self._wrapper, sceneItemId=item_id, sceneItemEnabled=True)
        return item_id

    def adopt_wrapper_item(self, scene: str, wrappers: list[dict], enabled: bool) -> int:
        """The one item of W in U (extra ones removed), shown as the user had S; returns its id."""
        for extra in wrappers[1:]:
            self.call("RemoveSceneItem", sceneName=scene, sceneItemId=extra["sceneItemId"])
        if wrappers:
            item_id = wrappers[0]["sceneItemId"]
            self.call("SetSceneItemEnabled", sceneName=scene, sceneItemId=item_id, sceneItemEnabled=enabled)
            return item_id
        return self.call("CreateSceneItem", sceneName=scene, sourceName=self._wrapper,
                         sceneItemEnabled=enabled)["sceneItemId"]

    def place_above_source(self, scene: str, item_id: int) -> None:
        """Move U's item `item_id` to just above S (where `restore()` looks for S)."""
        listed = self.call("GetSceneItemList", sceneName=scene)["sceneItems"]
        items = {i["sourceName"]: i["sceneItemIndex"] for i in listed}
        below = items[self.source] if items[self._wrapper] < items[self.source] else items[self.source] + 1
        self.call("SetSceneItemIndex", sceneName=scene, sceneItemId=item_id, sceneItemIndex=below)

    def adopt_filter(self) -> None:
        """W's mask filter, created or (when OBS kept it) given our settings again, and enabled; the scratch
        folder a killed run's filter showed goes (`drop_old_images`)."""
        try:
            self.call("CreateSourceFilter", sourceName=self._wrapper, filterName=FILTER_NAME, filterKind=FILTER_KIND,
                      filterSettings=self.filter_settings())
        except RequestFailed as error:
            if error.code != _EXISTS:
                raise
            self.drop_old_images()
            self.call("SetSourceFilterSettings", sourceName=self._wrapper, filterName=FILTER_NAME,
                      filterSettings=self.filter_settings(), overlay=False)
            self.call("SetSourceFilterEnabled", sourceName=self._wrapper, filterName=FILTER_NAME, filterEnabled=True)

    def drop_old_images(self) -> None:
        """Remove the scratch folder W's filter shows images from, when it is not this run's: a killed run left it
        (`remove_scratch_folder`), and once its rig is adopted or removed nothing shows them."""
        try:
            settings = self.call("GetSourceFilter", sourceName=self._wrapper, filterName=FILTER_NAME)
        except RequestFailed:
            return
        shown = Path(settings["filterSettings"].get("image_path") or self.mask_path).parent
        if shown != self.mask_path.parent:
            remove_scratch_folder(shown)

    def remove_background(self) -> None:
        """Remove B (blur mode's background image) if it is there; `show_background` makes it again."""
        self._background_ready = False
        if self._background in self.input_names():
            scenes = self.scene_names()
            self.remove_items(self._background, scenes)
            self.let_go_of_items(scenes)
            self.remove_background_input()
            self.wait_until_removed({self._background})

    def remove_items(self, source: str, scenes: list[str]) -> None:
        """Remove every item of `source` from `scenes` (before the source itself goes: `let_go_of_items`)."""
        for scene in scenes:
            for item in self.call("GetSceneItemList", sceneName=scene)["sceneItems"]:
                if item["sourceName"] == source:
                    self.call("RemoveSceneItem", sceneName=scene, sceneItemId=item["sceneItemId"])

    def client_for(self, on_frames: bool) -> obsws.ReqClient | None:
        """The frame connection when `on_frames` (for requests from the frame thread), else the rig's."""
        return self._frames if on_frames else self._client

    def scene_names(self, on_frames: bool = False) -> list[str]:
        """OBS's scenes in its list's order."""
        return [s["sceneName"] for s in self.send(self.client_for(on_frames), "GetSceneList", {})["scenes"]]

    def input_kinds(self, on_frames: bool = False) -> dict[str, str | None]:
        """OBS's inputs (its sources) in its list's order: name → kind without its version suffix."""
        inputs = self.send(self.client_for(on_frames), "GetInputList", {})["inputs"]
        return {i["inputName"]: i.get("unversionedInputKind") for i in inputs}

    def input_names(self) -> list[str]:
        """OBS's input names in its list's order."""
        return list(self.input_kinds())

    def find_scene(self) -> str:
        """The scene to work in: the one asked for, else the program scene when it holds S, else the first that does."""
        scenes = [s for s in self.scene_names() if s != self._wrapper]
        holding = [s for s in scenes if self.source in self.scene_sources(s)]
        if not holding:
            names = sorted(self.input_names())
            if self.source in names:
                group = self.group_holding()
                if group is not None:
                    raise SourceMissing(f"source {self.source!r} is inside group {group!r}: the plugin masks a source "
                                        "placed in a scene itself; take it out of the group (or add it to a scene "
                                        "on its own)", names)
                raise SourceMissing(f"source {self.source!r} is in no scene: add it to a scene first", names)
            raise self.missing()
        if self.scene is not None:
            if self.scene not in holding:
                raise SourceMissing(f"scene {self.scene!r} does not show source {self.source!r}; scenes that do: "
                                    f"{', '.join(holding)}", holding)
            return self.scene
        program = self.call("GetCurrentProgramScene")["currentProgramSceneName"]
        return program if program in holding else holding[0]

    def group_holding(self) -> str | None:
        """The first of OBS's groups that holds S, or None."""
        for group in self.call("GetGroupList")["groups"]:
            items = self.call("GetGroupSceneItemList", sceneName=group)["sceneItems"]
            if self.source in (item["sourceName"] for item in items):
                return group
        return None

    def scene_sources(self, scene: str) -> list[str]:
        return [i["sourceName"] for i in self.call("GetSceneItemList", sceneName=scene)["sceneItems"]]

    def filter_settings(self) -> dict:
        return {"image_path": str(self.mask_path), "type": "mask_color_filter.effect", "stretch": True}

    def show(self, alpha: np.ndarray, background: np.ndarray | None = None) -> None:
        """Apply `alpha` (h, w) uint8 (255 = visible) to S's picture; in blur mode also put `background`
        (h, w, 3) RGB under it."""
        if self.placement is None:
            raise StageError("show() before setup()")
        if self._taken_apart:
            raise self.rig_removed()
        self.check_size()
        write_image_atomic(self.mask_path, mask_on_canvas(alpha, self.placement), ".png")
        try:
            self.call("SetSourceFilterSettings", sourceName=self._wrapper, filterName=FILTER_NAME,
                      filterSettings=self.filter_settings(), overlay=True)
            if background is not None:
                self.show_background(background)
        except RequestFailed as error:
            if error.code != _NOT_FOUND:
                raise
            raise self.rig_removed() from error

    def check_size(self) -> None:
        """SourceResized when S's size in OBS (asked at most every SIZE_CHECK_S) is no longer the one the rig was
        placed for; a size of 0 (a media source between two files) is waited out."""
        if self.placement is None or self._inner is None or time.monotonic() < self._size_checked + SIZE_CHECK_S:
            return
        self._size_checked = time.monotonic()
        try:
            transform = self.call("GetSceneItemTransform", sceneName=self._wrapper,
                                  sceneItemId=self._inner)["sceneItemTransform"]
        except RequestFailed as error:
            if error.code != _NOT_FOUND:
                raise
            raise self.rig_removed() from error
        size = (round(transform["sourceWidth"]), round(transform["sourceHeight"]))
        if min(size) > 0 and size != self.placement.source_size:
            was = "×".join(map(str, self.placement.source_size))
            raise SourceResized(f"{self.source!r} changed size in OBS, from {was} to {size[0]}×{size[1]}: stopping, "
                                f"with {self.source!r} shown as before; start the plugin again (a mask drawn for the "
                                "new size) to mask it")

    def rig_removed(self) -> StageError:
        """The error for a rig the user took apart in OBS, saying what went and what the run does about it; when
        S itself was removed from OBS, SourceMissing (the run waits for it)."""
        if self.source not in self.input_names():
            return self.missing()
        went = self.what_went()
        shown = f", with {self.source!r} shown as before" if "where it was" not in went else ""
        return RigRemoved(f"the MobileVOS rig for {self.source!r} was taken apart in OBS ({went}): stopping{shown}; "
                          "start the plugin again to mask it")

    def what_went(self) -> str:
        """Which part of the rig is no longer in OBS, the largest first."""
        scenes = self.scene_names()
        if self.placement is not None and self.placement.scene not in scenes:
            return f"scene {self.placement.scene!r}, where it was, was removed"
        if self._wrapper not in scenes:
            return f"its scene {self._wrapper!r} was removed"
        if self.placement is not None and self._wrapper not in self.scene_sources(self.placement.scene):
            return f"{self._wrapper!r} was removed from scene {self.placement.scene!r}"
        if self.source not in self.scene_sources(self._wrapper):
            return f"{self.source!r} was removed from scene {self._wrapper!r}"
        if self._background_ready and self._background not in self.input_names():
            return f"its background {self._background!r} was removed"
        return "a part of it was removed"

    def show_background(self, image: np.ndarray) -> None:
        """Write the blurred frame to B (created under W on first use) and make OBS reload it."""
        write_image_atomic(self.background_path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), ".jpg")
        if self._background_ready:
            self.call("SetInputSettings", inputName=self._background, inputSettings={"file": str(self.background_path)})
            return
        placement = self.placement
        source = self.call("GetSceneItemTransform", sceneName=placement.scene,
                           sceneItemId=placement.item_id)["sceneItemTransform"]
        made = self.call("CreateInput", sceneName=placement.scene, inputName=self._background, inputKind="image_source",
                         inputSettings={"file": str(self.background_path)}, sceneItemEnabled=True)
        below = self.call("GetSceneItemIndex", sceneName=placement.scene,
                          sceneItemId=placement.item_id)["sceneItemIndex"]
        self.call("SetSceneItemIndex", sceneName=placement.scene, sceneItemId=made["sceneItemId"],
                  sceneItemIndex=below + 1)
        self.call("SetSceneItemTransform", sceneName=placement.scene, sceneItemId=made["sceneItemId"],
                  sceneItemTransform=background_transform(source, (image.shape[1], image.shape[0]),
                                                          placement.source_size))
        self._background_ready = True

    def restore(self) -> bool:
        """Undo the rig in every scene: S visible again (as W was, or, where W's item was deleted in OBS, as S was
        before this run's rig hid it), W and B removed. Safe to call any time; returns whether any part of a rig
        was there."""
        self._rig_items = set()  # what is removed from here on is our doing
        scenes = self.scene_names()
        self.follow_renamed_rig(scenes)
        inner = self.scene_sources(self._wrapper) if self._wrapper in scenes else []
        source = inner[0] if inner else self.source
        unwrapped, wrapped = set(), False  # the scenes where S was shown again as W was; whether W was in any
        kept = self.keep_source(scenes, source)
        for scene in scenes:
            if scene == self._wrapper:
                continue
            items = sorted(self.call("GetSceneItemList", sceneName=scene)["sceneItems"],
                           key=lambda i: i["sceneItemIndex"])
            if scene == kept:
                unwrapped.add(scene)
            for wrapper in (i for i in items if i["sourceName"] == self._wrapper):
                wrapped = True
                below = [i for i in items if i["sceneItemIndex"] < wrapper["sceneItemIndex"]
                         and i["sourceName"] != self._background]
                if below and below[-1]["sourceName"] == source:
                    self.call("SetSceneItemEnabled", sceneName=scene, sceneItemId=below[-1]["sceneItemId"],
                              sceneItemEnabled=wrapper["sceneItemEnabled"])
                    self.keep_users_move(scene, wrapper, below[-1]["sceneItemId"], source)
                    unwrapped.add(scene)
                self.call("RemoveSceneItem", sceneName=scene, sceneItemId=wrapper["sceneItemId"])  # before W goes
        self.remove_items(self._background, scenes)  # before B goes
        if self.placement is not None and self._shown_as is not None and self.placement.scene not in unwrapped:
            with suppress(RequestFailed):  # S's item gone too: nothing left to show
                self.call("SetSceneItemEnabled", sceneName=self.placement.scene, sceneItemId=self.placement.item_id,
                          sceneItemEnabled=self._shown_as)
        inputs = self.input_names()
        found = wrapped or self._wrapper in scenes or self._background in inputs
        if self._wrapper in scenes or self._background in inputs:
            self.let_go_of_items(scenes)
        if self._wrapper in scenes:
            self.drop_old_images()
            self.call("RemoveScene", sceneName=self._wrapper)
        self.remove_background_input()
        self.placement, self._shown_as, self._placed = None, None, None
        self._background_ready = False
        self.wait_until_removed({self._wrapper, self._background})
        return found

    def keep_users_move(self, scene: str, wrapper: dict, item_id: int, source: str) -> None:
        """When the user moved, scaled or cropped the masked picture (W's item) during this run, give S's item
        `item_id` in `scene` that place, so the stop does not move the picture back on air."""
        if self._placed is None or not moved_by_user(wrapper["sceneItemTransform"], self._placed):
            return
        place = self.place_shown_by(wrapper, source)
        if place is not None:
            self.call("SetSceneItemTransform", sceneName=scene, sceneItemId=item_id, sceneItemTransform=place)

    def keep_source(self, scenes: list[str], source: str) -> str | None:
        """When W is the only scene left holding S (the user deleted S's own hidden item while the rig was up),
        put S back where W's item shows it (in the scene the rig was built in, else the first), before W goes and
        OBS destroys S with it (its settings and filters lost); the scene it was put in, else None."""
        if self._wrapper not in scenes or source not in self.scene_sources(self._wrapper):
            return None
        showing = []  # (scene, W's item there)
        for scene in (s for s in scenes if s != self._wrapper):
            items = self.call("GetSceneItemList", sceneName=scene)["sceneItems"]
            if any(item["sourceName"] == source for item in items):
                return None  # S has a home besides W
            showing += [(scene, item) for item in items if item["sourceName"] == self._wrapper]
        if not showing:
            return None
        built_in = self.placement.scene if self.placement is not None else None
        scene, wrapper = next(((s, w) for s, w in showing if s == built_in), showing[0])
        place = self.place_shown_by(wrapper, source)
        if place is None:
            return None
        made = self.call("CreateSceneItem", sceneName=scene, sourceName=source,
                         sceneItemEnabled=wrapper["sceneItemEnabled"])["sceneItemId"]
        self.call("SetSceneItemTransform", sceneName=scene, sceneItemId=made, sceneItemTransform=place)
        self.call("SetSceneItemIndex", sceneName=scene, sceneItemId=made, sceneItemIndex=wrapper["sceneItemIndex"])
        return scene

    def place_shown_by(self, wrapper: dict, source: str) -> dict | None:
        """S's transform in U that shows what W's item `wrapper` shows (`unwrapped_transform` of S's item in W);
        None when W no longer holds S."""
        inner = next((i for i in self.call("GetSceneItemList", sceneName=self._wrapper)["sceneItems"]
                      if i["sourceName"] == source), None)
        if inner is None:
            return None
        video = self.call("GetVideoSettings")
        return unwrapped_transform(wrapper["sceneItemTransform"], inner["sceneItemTransform"],
                                   (video["baseWidth"], video["baseHeight"]))

    def remove_background_input(self) -> None:
        """Remove B's input, unless OBS has dropped it already: an input left in no scene goes by itself, at any
        moment (between a look at OBS's inputs and the request too)."""
        try:
            self.call("RemoveInput", inputName=self._background)
        except RequestFailed as error:
            if error.code != _NOT_FOUND:
                raise

    def let_go_of_items(self, scenes: list[str]) -> None:
        """Before W or B itself is removed: wait until no scene but W holds an item of W or B, then until OBS has
        rendered (`let_updates_apply`). OBS 29's Sources list drops its widget's item when the item's *source* is
        removed, on the remover's thread, racing the UI thread that drops it for the item's own removal: B removed
        by RemoveInput with its item still in U released that item twice (`double free or corruption` in
        `obs_sceneitem_release` → `gs_texrender_destroy`, or a segfault) within a few blur-mode rigs when S is
        cropped. Removing the items first avoids it; an input left in no scene then goes by itself."""
        deadline = time.monotonic() + _SETTLE_S
        ours = {self._wrapper, self._background}
        while time.monotonic() < deadline and any(
                ours & set(self.scene_sources(scene)) for scene in scenes if scene != self._wrapper):
            time.sleep(0.05)
        self.let_updates_apply()

    def let_updates_apply(self, frames: int = 2, timeout_s: float = _SETTLE_S) -> None:
        """Wait until OBS has rendered `frames` more frames: OBS applies a video source's or filter's new settings
        (our mask, B's image) on its next video tick, and its UI and graphics threads let go of a removed scene
        item later too. Removing W while its item in U was still being released aborted OBS 29
        (`munmap_chunk(): invalid pointer` in `obs_sceneitem_release`, within 1–26 rigs built and removed)."""
        target = self.call("GetStats")["renderTotalFrames"] + frames
        deadline = time.monotonic() + timeout_s
        while self.call("GetStats")["renderTotalFrames"] < target and time.monotonic() < deadline:
            time.sleep(0.01)

    def wait_until_removed(self, ours: set[str], timeout_s: float = _SETTLE_S) -> None:
        """OBS drops a removed source and its items on a later tick: wait until none of `ours` is a scene, an
        input or a scene's item, so that we exit with the scene as it was and a new rig never meets the old one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.any_left(ours):
                return
            time.sleep(0.05)
        raise StageError(f"OBS still shows {sorted(ours)} after removing them; remove them by hand")

    def any_left(self, ours: set[str]) -> bool:
        """True while any of `ours` is a scene, an input, or an item of a scene."""
        scenes = self.scene_names()
        inputs = set(self.input_names())
        return bool(ours & (set(scenes) | inputs)) or any(ours & set(self.scene_sources(scene)) for scene in scenes)

    def rig_in_obs(self) -> bool:
        """Whether a rig for S is in OBS (W is a scene): this run's, another plugin's, or one a killed run left."""
        scenes = self.scene_names()
        self.follow_renamed_rig(scenes)
        return self._wrapper in scenes

    def follow_renamed_rig(self, scenes: list[str]) -> None:
        """Take the names of S's rig as OBS has them: one built before S was renamed (a killed run's, or a running
        plugin's, which follows the rename) is named after S's old name, its scene holding S."""
        if self._wrapper in scenes:
            return
        for scene in scenes:
            if scene.endswith(WRAPPER_SUFFIX) and self.source in self.scene_sources(scene):
                old = scene[:-len(WRAPPER_SUFFIX)]
                self._wrapper, self._background = wrapper_name(old), background_name(old)
                return

    def broadcast(self, data: dict) -> None:
        """Send a CustomEvent to every WebSocket client (the re-annotation channel)."""
        self.call("BroadcastCustomEvent", eventData=data)
