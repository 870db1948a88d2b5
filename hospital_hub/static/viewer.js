// X-ray viewer on a <canvas>: zoom (wheel, buttons), pan (drag), window/level
// (sliders, or right-drag / shift-drag), overlay boxes from the diagnosis (labelled
// with their source: heat map or detector), and a finding's AI heat map over the image.
(function () {
  "use strict";
  const canvas = document.getElementById("xray");
  if (!canvas) return;
  const data = JSON.parse(document.getElementById("case-data").textContent);
  const ctx = canvas.getContext("2d");
  const state = { zoom: 1, panX: 0, panY: 0, window: 255, level: 128, boxes: true, source: "none",
                  heatmap: false, heatmapIndex: 0 };
  const heatmaps = data.heatmaps || [];
  const heatImages = {};    // index -> loaded overlay <img> (the X-ray with the heat map blended in)
  const sources = data.sources || {};
  let grey = null;            // Uint8ClampedArray of grey levels of the source image
  let width = 0, height = 0;  // source image size
  const shown = document.createElement("canvas");  // the source after window/level

  function applyWindowLevel() {
    if (!grey) return;
    const sctx = shown.getContext("2d");
    const out = sctx.createImageData(width, height);
    const low = state.level - state.window / 2;
    const scale = 255 / Math.max(1, state.window);
    for (let i = 0, j = 0; i < grey.length; i++, j += 4) {
      const v = Math.max(0, Math.min(255, (grey[i] - low) * scale));
      out.data[j] = out.data[j + 1] = out.data[j + 2] = v;
      out.data[j + 3] = 255;
    }
    sctx.putImageData(out, 0, 0);
  }

  function transform() {
    const fit = Math.min(canvas.width / width, canvas.height / height);
    const s = fit * state.zoom;
    return { s: s, tx: (canvas.width - width * s) / 2 + state.panX, ty: (canvas.height - height * s) / 2 + state.panY };
  }

  let labels = [];  // where the box labels were drawn, in image pixels

  function overlaps(a, b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  }

  // The box labels on the thumbnail figure (HTML): move each down while it covers an earlier one.
  function separateFigureLabels() {
    const placed = [];
    document.querySelectorAll("#regions-figure .region-label").forEach(function (el) {
      el.style.transform = "";
      let shift = 0;
      for (let n = 0; n < 20; n++) {
        const r = el.getBoundingClientRect();
        const box = { x: r.left, y: r.top + shift, w: r.width, h: r.height };
        if (!placed.some(function (o) { return overlaps(o, box); })) { placed.push(box); break; }
        shift += r.height;
      }
      if (shift) el.style.transform = "translateY(" + shift + "px)";
    });
  }

  function draw() {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * ratio), h = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (!grey) return;
    const t = transform();
    ctx.setTransform(t.s, 0, 0, t.s, t.tx, t.ty);
    ctx.imageSmoothingEnabled = state.zoom < 2;
    ctx.drawImage(shown, 0, 0);
    const heat = state.heatmap ? heatImages[state.heatmapIndex] : null;
    if (heat && heat.complete && heat.naturalWidth) ctx.drawImage(heat, 0, 0, width, height);
    labels = [];
    if (state.boxes) {
      ctx.lineWidth = 2 / t.s;
      ctx.font = (12 / t.s) + "px sans-serif";
      const lineH = 15 / t.s;
      data.regions.forEach(function (r) {
        const colour = r.source === "detector" ? "#00e5ff" : "#ffcc00";
        ctx.strokeStyle = colour;
        ctx.setLineDash(r.source ? [] : [6 / t.s, 4 / t.s]);
        ctx.strokeRect(r.x1 * width, r.y1 * height, (r.x2 - r.x1) * width, (r.y2 - r.y1) * height);
        const text = r.finding + " " + Math.round(r.score * 100) + "% · " + (sources[r.source || ""] || "");
        // Above the box, or inside it at the top edge; moved down a line while it would cover another label.
        const box = { x: r.x1 * width, y: r.y1 * height - lineH, w: ctx.measureText(text).width + 6 / t.s, h: lineH };
        if (box.y < 0) box.y = r.y1 * height;
        for (let n = 0; n < 20 && labels.some(function (o) { return overlaps(o, box); }); n++) box.y += lineH;
        labels.push(box);
        ctx.fillStyle = "rgba(0, 0, 0, .75)";
        ctx.fillRect(box.x, box.y, box.w, box.h);
        ctx.fillStyle = colour;
        ctx.fillText(text, box.x + 3 / t.s, box.y + box.h - 3 / t.s);
      });
      ctx.setLineDash([]);
    }
    const m = ctx.getTransform();
    canvas.dataset.transform = [m.a, m.b, m.c, m.d, m.e, m.f].map(function (v) { return v.toFixed(3); }).join(",");
    canvas.dataset.windowLevel = state.window + "/" + state.level;
  }

  function load(url, source, fallback) {
    const img = new Image();
    img.onload = function () {
      width = img.naturalWidth; height = img.naturalHeight;
      shown.width = width; shown.height = height;
      const tmp = document.createElement("canvas");
      tmp.width = width; tmp.height = height;
      const tctx = tmp.getContext("2d");
      tctx.drawImage(img, 0, 0);
      const rgba = tctx.getImageData(0, 0, width, height).data;
      grey = new Uint8ClampedArray(width * height);
      for (let i = 0; i < grey.length; i++) grey[i] = rgba[i * 4];
      state.source = source;
      canvas.dataset.source = source;
      const label = document.getElementById("image-source");
      if (label) label.textContent = label.dataset[source] || source;
      applyWindowLevel();
      draw();
    };
    img.onerror = function () { if (fallback) fallback(); };
    img.src = url + (url.indexOf("?") < 0 ? "?" : "&") + "t=" + Date.now();
  }

  function loadBest() {
    load(data.preview, "full", function () { if (state.source === "none") load(data.thumbnail, "thumbnail"); });
  }

  function loadHeatmap() {
    const i = state.heatmapIndex;
    if (!state.heatmap || !heatmaps[i] || heatImages[i]) return;
    const img = new Image();
    img.onload = draw;
    img.src = heatmaps[i].url;
    heatImages[i] = img;
  }

  function setZoom(zoom, cx, cy) {
    const z = Math.max(0.5, Math.min(16, zoom));
    if (cx !== undefined) {  // keep the point under the cursor in place
      const t = transform();
      const ix = (cx - t.tx) / t.s, iy = (cy - t.ty) / t.s;
      state.zoom = z;
      const n = transform();
      state.panX += cx - (ix * n.s + n.tx);
      state.panY += cy - (iy * n.s + n.ty);
    } else {
      state.zoom = z;
    }
    draw();
  }

  function setWindowLevel(w, l) {
    state.window = Math.max(1, Math.min(255, Math.round(w)));
    state.level = Math.max(0, Math.min(255, Math.round(l)));
    document.getElementById("ww").value = state.window;
    document.getElementById("wl").value = state.level;
    applyWindowLevel();
    draw();
  }

  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    const ratio = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    setZoom(state.zoom * (e.deltaY < 0 ? 1.2 : 1 / 1.2), (e.clientX - rect.left) * ratio, (e.clientY - rect.top) * ratio);
  }, { passive: false });

  let drag = null;
  canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY, wl: e.button === 2 || e.shiftKey, w: state.window, l: state.level, px: state.panX, py: state.panY };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.wl) { setWindowLevel(drag.w + dx, drag.l + dy); return; }
    const ratio = window.devicePixelRatio || 1;
    state.panX = drag.px + dx * ratio; state.panY = drag.py + dy * ratio;
    draw();
  });
  canvas.addEventListener("pointerup", function () { drag = null; });

  document.getElementById("zoom-in").addEventListener("click", function () { setZoom(state.zoom * 1.25); });
  document.getElementById("zoom-out").addEventListener("click", function () { setZoom(state.zoom / 1.25); });
  document.getElementById("reset-view").addEventListener("click", function () {
    state.zoom = 1; state.panX = 0; state.panY = 0; setWindowLevel(255, 128);
  });
  document.getElementById("ww").addEventListener("input", function (e) { setWindowLevel(Number(e.target.value), state.level); });
  document.getElementById("wl").addEventListener("input", function (e) { setWindowLevel(state.window, Number(e.target.value)); });
  document.getElementById("toggle-boxes").addEventListener("change", function (e) { state.boxes = e.target.checked; draw(); });
  const toggleHeatmap = document.getElementById("toggle-heatmap");
  if (toggleHeatmap && heatmaps.length) {
    toggleHeatmap.addEventListener("change", function (e) { state.heatmap = e.target.checked; loadHeatmap(); draw(); });
  }
  const pickHeatmap = document.getElementById("heatmap-finding");
  if (pickHeatmap) {
    pickHeatmap.addEventListener("change", function (e) {
      state.heatmapIndex = Number(e.target.value) || 0;
      state.heatmap = true;
      if (toggleHeatmap) toggleHeatmap.checked = true;
      loadHeatmap();
      draw();
    });
  }
  document.addEventListener("gh:refreshed", function () { if (state.source !== "full") loadBest(); });
  window.addEventListener("resize", function () { draw(); separateFigureLabels(); });
  window.addEventListener("load", separateFigureLabels);
  document.addEventListener("gh:refreshed", separateFigureLabels);

  // A probe for tests and for support: the view's state and a checksum of the pixels shown.
  window.ghViewer = {
    state: function () { return Object.assign({ transform: canvas.dataset.transform || "" }, state); },
    labels: function () { return labels.map(function (b) { return Object.assign({}, b); }); },
    checksum: function () {
      const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let sum = 0;
      for (let i = 0; i < px.length; i += 97) sum = (sum + px[i] * (i % 251 + 1)) % 1000000007;
      return sum;
    },
  };
  loadBest();
})();
