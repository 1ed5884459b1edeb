// Drags on the annotation frame (#frame img). With a box or brush mode chosen, a press that travels is a drag: a
// rectangle or a line follows the pointer, and on release the path, in the picture's own pixels, goes to the
// server as one edit through the hidden #drag textbox. A press that does not travel stays a click (Gradio's
// select event), and in the click modes nothing here acts, except for a click made while the picture reloads,
// which Gradio would lose: it goes through #drag as well.
(() => {
  const TRAVEL_PX = 6;         // screen pixels a press must travel to be a drag
  const CLICK_AFTER_MS = 500;  // a click this soon after a drag ended is the drag's own release, not a new mark
  const MAX_POINTS = 2000;     // of one drag's path
  const SVG = "http://www.w3.org/2000/svg";
  let drag = null;
  let dragEnded = -Infinity;
  let sent = 0;
  let loadedSize = null;  // the frame picture's size when it last loaded: it reads 0 while the next one loads

  const chosenMode = () => document.querySelector("#mode input:checked")?.value ?? "";
  const dragsInMode = (mode) => mode.startsWith("Box") || mode.startsWith("Brush");
  const naturalSize = (img) => (img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : loadedSize);

  // The picture's place on screen: letterboxed inside its element and never enlarged (object-fit: scale-down), as
  // Gradio's own click position takes it.
  function shownPicture(img) {
    const rect = img.getBoundingClientRect();
    const [naturalWidth, naturalHeight] = naturalSize(img);
    const scale = Math.min(rect.width / naturalWidth, rect.height / naturalHeight, 1);
    const width = naturalWidth * scale, height = naturalHeight * scale;
    return {left: rect.left + (rect.width - width) / 2, top: rect.top + (rect.height - height) / 2, width, height,
            scale, naturalWidth, naturalHeight};
  }

  // A pointer position in the picture's pixels, by its place `shown` when the press began (measured once: the
  // picture may be replaced under the pointer when the last edit's answer comes).
  function picturePoint(shown, event) {
    const x = Math.round((event.clientX - shown.left) / shown.scale);
    const y = Math.round((event.clientY - shown.top) / shown.scale);
    return [Math.min(shown.naturalWidth - 1, Math.max(0, x)), Math.min(shown.naturalHeight - 1, Math.max(0, y))];
  }

  // What follows the pointer: an SVG over the picture, in the picture's pixels.
  function newOverlay(shown, box) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${shown.naturalWidth} ${shown.naturalHeight}`);
    svg.id = "drag-overlay";
    Object.assign(svg.style, {position: "fixed", left: `${shown.left}px`, top: `${shown.top}px`,
                              width: `${shown.width}px`, height: `${shown.height}px`, pointerEvents: "none",
                              zIndex: 1000});
    const shape = document.createElementNS(SVG, box ? "rect" : "polyline");
    Object.assign(shape.style, {fill: "none", stroke: "#fff", strokeWidth: `${2 / shown.scale}`,
                                strokeDasharray: box ? `${6 / shown.scale}` : "none", strokeLinecap: "round",
                                strokeLinejoin: "round"});
    svg.appendChild(shape);
    document.body.appendChild(svg);
    return shape;
  }

  function drawPath(shape, points) {
    if (shape.tagName === "rect") {
      const [[x1, y1], [x2, y2]] = [points[0], points[points.length - 1]];
      shape.setAttribute("x", Math.min(x1, x2));
      shape.setAttribute("y", Math.min(y1, y2));
      shape.setAttribute("width", Math.abs(x2 - x1));
      shape.setAttribute("height", Math.abs(y2 - y1));
    } else {
      shape.setAttribute("points", points.map((p) => p.join(",")).join(" "));
    }
  }

  function endDrag() {
    document.getElementById("drag-overlay")?.remove();
    drag = null;
  }

  // `shown`'s size goes along: the server drops a gesture placed on another clip's picture (one made while a new
  // clip's first picture loaded, placed by the last clip's size).
  function send(shown, points, click = false) {
    const field = document.querySelector("#drag textarea, #drag input");
    if (!field) return;
    sent += 1;  // every drag a new value, so that two alike are both edits
    field.value = JSON.stringify({points, click, size: [shown.naturalWidth, shown.naturalHeight], drag: sent});
    field.dispatchEvent(new Event("input", {bubbles: true}));
  }

  document.addEventListener("pointerdown", (event) => {
    dragEnded = -Infinity;  // a touch drag is followed by no click to swallow: this press is a new one
    if (drag) endDrag();  // a second finger, or a release the page never heard (outside the window): no edit
    const img = event.target.closest?.("#frame img");
    if (!img || event.button !== 0 || !naturalSize(img) || !dragsInMode(chosenMode())) return;
    event.preventDefault();  // no image dragged out of the page, no text selected
    img.setPointerCapture(event.pointerId);
    const shown = shownPicture(img);
    drag = {shown, pointer: event.pointerId, x: event.clientX, y: event.clientY, box: chosenMode().startsWith("Box"),
            points: [picturePoint(shown, event)], shape: null};
  });

  document.addEventListener("pointermove", (event) => {
    if (!drag || event.pointerId !== drag.pointer) return;
    if (!drag.shape && Math.hypot(event.clientX - drag.x, event.clientY - drag.y) < TRAVEL_PX) return;
    drag.shape ??= newOverlay(drag.shown, drag.box);
    const point = picturePoint(drag.shown, event);
    const last = drag.points[drag.points.length - 1];
    if (drag.box) drag.points = [drag.points[0], point];
    else if ((point[0] !== last[0] || point[1] !== last[1]) && drag.points.length < MAX_POINTS) drag.points.push(point);
    drawPath(drag.shape, drag.points);
  });

  document.addEventListener("pointerup", (event) => {
    if (!drag || event.pointerId !== drag.pointer) return;
    if (drag.shape) {
      dragEnded = performance.now();
      send(drag.shown, drag.points);
    }
    endDrag();
  });

  document.addEventListener("pointercancel", (event) => {
    if (drag && event.pointerId === drag.pointer) endDrag();
  });

  // On a touch screen a drag on the picture would scroll the page: in the drag modes it draws instead.
  document.addEventListener("change", (event) => {
    if (event.target.closest?.("#mode")) document.body.classList.toggle("frame-drags", dragsInMode(chosenMode()));
  });

  document.addEventListener("load", (event) => {
    if (event.target.closest?.("#frame img")) loadedSize = [event.target.naturalWidth, event.target.naturalHeight];
  }, true);  // a picture's load does not bubble: it is heard on the way down

  // Gradio places a click by the picture's own size, which reads 0 while the last edit's answer loads: it would lose
  // a click made then. Such a click goes as a one-point path marked as a click, placed by the last picture's size
  // (the same frame's), with the mode and object chosen when it was made.
  document.addEventListener("click", (event) => {
    if (!event.target.closest?.("#frame")) return;
    const img = event.target.closest("#frame img");
    const dragsRelease = performance.now() - dragEnded < CLICK_AFTER_MS;
    const whileLoading = img && !img.naturalWidth && loadedSize;
    if (!dragsRelease && !whileLoading) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    if (dragsRelease) dragEnded = -Infinity;
    else {
      const shown = shownPicture(img);
      send(shown, [picturePoint(shown, event)], true);
    }
  }, true);
})();
