/* attnviz explorer kit: what every attnviz page draws with (plain JavaScript on <canvas>, no
   library, no network).  Inlined once before each widget's script, it sets window.attnvizKit;
   a page script reads its helpers from there.  Defining it again (a second widget in a notebook)
   replaces it with the same functions. */
window.attnvizKit = (function () {
  "use strict";
  // ------------------------------------------------------------------ the widget and its data
  // by id; or, where a notebook runs the script before its output is in the document, in the
  // tree the script itself sits in (call while the widget's script runs: currentScript is set)
  function widget(uid) {
    var here = document.currentScript && document.currentScript.parentNode;
    function byId(id) { return document.getElementById(id) || (here && here.querySelector ? here.querySelector("#" + id) : null); }
    var root = byId("attnviz-" + uid), dataNode = byId("attnviz-" + uid + "-data");
    if (!root || !dataNode) return null;
    return { root: root, data: JSON.parse(dataNode.textContent),
             part: function (name) { return root.querySelector("[data-part='" + name + "']"); } };
  }
  function bytes(b64) {
    var s = atob(b64), n = s.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  // a base64 little-endian array as a typed array (Float64Array, Float32Array, Uint16Array ...)
  function typed(b64, Kind) { return b64 ? new Kind(bytes(b64).buffer) : null; }
  function show(root) {  // the script runs: drop the no-JavaScript note, show the page
    var fb = root.querySelector(".avx-fallback"); if (fb) fb.remove();
    root.querySelector(".avx-body").style.display = "";
  }
  function register(space, uid, api) {
    window[space] = window[space] || {};
    window[space][uid] = api;
  }

  // ------------------------------------------------------------------ look
  var C = { blue: "#0173b2", orange: "#de8f05", green: "#029e73", red: "#d55e00", purple: "#cc78bc",
            grey: "#949494", ink: "#1d232b", soft: "#5b6470", line: "#c9d0d8", boundary: "#00b4d8",
            sel: "#00b4d8", best: "#39ff14", query: "rgba(213,94,0,0.15)" };
  var FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif";
  function font(px, weight) { return (weight || "") + " " + px + "px " + FONT; }
  // t in [0, 1] -> a CSS colour of a 256-entry RGB table
  function lutColor(lut) {
    return function (t) {
      var i = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
      return "rgb(" + lut[i] + "," + lut[i + 1] + "," + lut[i + 2] + ")";
    };
  }
  function fmt(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1000 || Math.abs(v - Math.round(v)) < 1e-9 * Math.max(1, a)) return String(Math.round(v));
    if (a < 1e-3) return v.toExponential(1);
    return String(+v.toPrecision(3));
  }
  function ticks(lo, hi, n) {
    var span = hi - lo;
    if (!(span > 0)) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10(span / n))), err = span / n / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var out = [];
    for (var v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    out.step = step;
    return out;
  }
  // a tick label with as many decimals as the tick step needs (0.005, 0.010, 0.015)
  function fmtTick(v, step) {
    if (v === 0) return "0";
    var d = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)), a = Math.abs(v);
    if (a >= 1e6 || d > 6) return v.toExponential(Math.min(6, Math.max(1, d + Math.floor(Math.log10(a)))));
    return v.toFixed(d);
  }
  function prep(canvas, w, h) {
    var r = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * r); canvas.height = Math.round(h * r);
    canvas.style.height = h + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(r, 0, 0, r, 0, 0);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
    return ctx;
  }
  function title(ctx, text, maxW) {
    ctx.font = font(12.5, "600"); ctx.fillStyle = C.ink; ctx.textBaseline = "top"; ctx.textAlign = "left";
    fitText(ctx, text, 0, 2, maxW);
  }
  // an axes box: x/y ranges -> pixels (flipY: y grows downwards, as for a matrix)
  function Axes(x, y, w, h, xr, yr, flipY) {
    this.x = x; this.y = y; this.w = w; this.h = h; this.xr = xr; this.yr = yr; this.flip = !!flipY;
  }
  Axes.prototype.sx = function (v) { return this.x + (v - this.xr[0]) / (this.xr[1] - this.xr[0]) * this.w; };
  Axes.prototype.sy = function (v) {
    var t = (v - this.yr[0]) / (this.yr[1] - this.yr[0]);
    return this.flip ? this.y + t * this.h : this.y + this.h - t * this.h;
  };
  Axes.prototype.ix = function (px) { return this.xr[0] + (px - this.x) / this.w * (this.xr[1] - this.xr[0]); };
  Axes.prototype.iy = function (py) {
    var t = (py - this.y) / this.h;
    return this.yr[0] + (this.flip ? t : 1 - t) * (this.yr[1] - this.yr[0]);
  };
  Axes.prototype.clip = function (ctx) { ctx.save(); ctx.beginPath(); ctx.rect(this.x, this.y, this.w, this.h); ctx.clip(); };
  // frame, ticks, tick labels, axis labels; o = {xlabel, ylabel, grid, xticks: bool, nx, ny}
  function drawAxes(ctx, ax, o) {
    o = o || {};
    ctx.save();
    ctx.font = font(11); ctx.fillStyle = C.ink; ctx.strokeStyle = C.ink; ctx.lineWidth = 1;
    var xt = ticks(Math.min(ax.xr[0], ax.xr[1]), Math.max(ax.xr[0], ax.xr[1]), o.nx || 6);
    var yt = ticks(Math.min(ax.yr[0], ax.yr[1]), Math.max(ax.yr[0], ax.yr[1]), o.ny || 5);
    if (o.grid) {
      ctx.strokeStyle = "#e6e9ee";
      xt.forEach(function (v) { var p = Math.round(ax.sx(v)) + 0.5; ctx.beginPath(); ctx.moveTo(p, ax.y); ctx.lineTo(p, ax.y + ax.h); ctx.stroke(); });
      yt.forEach(function (v) { var p = Math.round(ax.sy(v)) + 0.5; ctx.beginPath(); ctx.moveTo(ax.x, p); ctx.lineTo(ax.x + ax.w, p); ctx.stroke(); });
      ctx.strokeStyle = C.ink;
    }
    ctx.strokeRect(Math.round(ax.x) + 0.5, Math.round(ax.y) + 0.5, Math.round(ax.w), Math.round(ax.h));
    if (o.xticks !== false) {
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      xt.forEach(function (v) {
        var p = Math.round(ax.sx(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(p, ax.y + ax.h); ctx.lineTo(p, ax.y + ax.h + 4); ctx.stroke();
        ctx.fillText(fmtTick(v, xt.step), p, ax.y + ax.h + 6);
      });
    }
    if (o.yticks !== false) {
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      yt.forEach(function (v) {
        var p = Math.round(ax.sy(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(ax.x - 4, p); ctx.lineTo(ax.x, p); ctx.stroke();
        ctx.fillText(fmtTick(v, yt.step), ax.x - 6, p);
      });
    }
    ctx.font = font(11.5);
    if (o.xlabel) { ctx.textAlign = "center"; ctx.textBaseline = "bottom"; ctx.fillText(o.xlabel, ax.x + ax.w / 2, ax.y + ax.h + (o.xticks === false ? 16 : 34)); }
    if (o.ylabel) {
      ctx.save(); ctx.translate(ax.x - (o.ylabelGap || 48), ax.y + ax.h / 2); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "center"; ctx.textBaseline = "top"; ctx.fillText(o.ylabel, 0, 0); ctx.restore();
    }
    ctx.restore();
  }
  function vline(ctx, ax, x, color, dash, lw) {
    if (x < Math.min(ax.xr[0], ax.xr[1]) || x > Math.max(ax.xr[0], ax.xr[1])) return;
    ctx.save(); ctx.strokeStyle = color; ctx.lineWidth = lw || 1.2; ctx.setLineDash(dash || []);
    ctx.beginPath(); ctx.moveTo(ax.sx(x), ax.y); ctx.lineTo(ax.sx(x), ax.y + ax.h); ctx.stroke(); ctx.restore();
  }
  function polyline(ctx, ax, xs, ys, color, lw, dash) {
    ctx.save(); ctx.strokeStyle = color; ctx.lineWidth = lw || 1.4; ctx.setLineDash(dash || []);
    ctx.lineJoin = "round"; ctx.beginPath();
    for (var i = 0; i < xs.length; i++) {
      if (i === 0) ctx.moveTo(ax.sx(xs[i]), ax.sy(ys[i])); else ctx.lineTo(ax.sx(xs[i]), ax.sy(ys[i]));
    }
    ctx.stroke(); ctx.restore();
  }
  // a title that fits: trimmed with an ellipsis when wider than maxW
  function fitText(ctx, text, x, y, maxW) {
    if (ctx.measureText(text).width > maxW) {
      while (text.length > 1 && ctx.measureText(text + "…").width > maxW) text = text.slice(0, -1);
      text += "…";
    }
    ctx.fillText(text, x, y);
  }
  function haloText(ctx, text, x, y, color) {
    ctx.save(); ctx.lineWidth = 3; ctx.strokeStyle = "rgba(255,255,255,0.95)"; ctx.lineJoin = "round";
    ctx.strokeText(text, x, y); ctx.fillStyle = color; ctx.fillText(text, x, y); ctx.restore();
  }
  // a legend row drawn on the canvas (so the PNG carries it); items: [{label, color, kind}]
  function legend(ctx, x, y, maxW, items) {
    ctx.save(); ctx.font = font(11); ctx.textBaseline = "middle";
    var cx = x, cy = y;
    items.forEach(function (it) {
      var w = 22 + ctx.measureText(it.label).width + 12;
      if (cx + w > x + maxW && cx > x) { cx = x; cy += 15; }
      ctx.strokeStyle = it.color; ctx.fillStyle = it.color; ctx.lineWidth = it.lw || 1.6;
      ctx.setLineDash(it.dash || []);
      if (it.kind === "box") { ctx.globalAlpha = it.alpha || 1; ctx.fillRect(cx, cy - 5, 16, 10); ctx.globalAlpha = 1; }
      else if (it.kind === "tri") { tri(ctx, cx + 8, cy + 3, 5); }
      else if (it.kind === "hatch") { hatch(ctx, [[cx, cy - 5, 16, 10]], 4); ctx.strokeStyle = C.soft; ctx.lineWidth = 1; ctx.strokeRect(cx + 0.5, cy - 4.5, 15, 9); }
      else if (it.kind === "dot") { dot(ctx, cx + 8, cy, 3.5, it.color); }
      else if (it.kind === "ring") { ctx.lineWidth = 1.1; ctx.beginPath(); ctx.arc(cx + 8, cy, 3, 0, 2 * Math.PI); ctx.stroke(); }
      else { ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(cx + 16, cy); ctx.stroke(); }
      ctx.setLineDash([]); ctx.fillStyle = C.ink; ctx.fillText(it.label, cx + 21, cy);
      cx += w;
    });
    ctx.restore();
    return cy + 15;
  }
  // "not seen by this layer": rects [[x, y, w, h], ...] filled light grey under dark diagonal lines
  var UNSEEN = "#d5d9df", UNSEEN_RGB = [213, 217, 223];
  function hatch(ctx, rects, step) {
    if (!rects.length) return;
    var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    ctx.save(); ctx.beginPath();
    rects.forEach(function (r) {
      ctx.rect(r[0], r[1], r[2], r[3]);
      x0 = Math.min(x0, r[0]); y0 = Math.min(y0, r[1]); x1 = Math.max(x1, r[0] + r[2]); y1 = Math.max(y1, r[1] + r[3]);
    });
    ctx.clip(); ctx.fillStyle = UNSEEN; ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    ctx.strokeStyle = "#7d8590"; ctx.lineWidth = 0.9; ctx.setLineDash([]); ctx.beginPath();
    step = step || 6;
    for (var d = x0 - (y1 - y0); d < x1; d += step) { ctx.moveTo(d, y1); ctx.lineTo(d + (y1 - y0), y0); }
    ctx.stroke(); ctx.restore();
  }
  function tri(ctx, x, y, r) {  // downward triangle whose tip is at (x, y)
    ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x - r, y - 1.6 * r); ctx.lineTo(x + r, y - 1.6 * r); ctx.closePath();
    ctx.fill(); ctx.save(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 0.8; ctx.stroke(); ctx.restore();
  }
  function dot(ctx, x, y, r, color) {  // a filled disc with a white ring
    ctx.save(); ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fillStyle = color; ctx.fill();
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke(); ctx.restore();
  }
  function percentile(sorted, p) {
    var pos = (sorted.length - 1) * p / 100, i = Math.floor(pos), f = pos - i;
    return i + 1 < sorted.length ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
  }
  // a colour bar along x: lut colours over [lo, hi] at (x, y), w wide, with its end labels
  function colourBar(ctx, rgb, x, y, w, lo, hi, label) {
    for (var i = 0; i < w; i++) { ctx.fillStyle = rgb(i / (w - 1)); ctx.fillRect(x + i, y, 1.5, 8); }
    ctx.fillStyle = C.ink; ctx.font = font(10.5); ctx.textBaseline = "top";
    ctx.textAlign = "left"; ctx.fillText(fmt(+lo.toFixed(2)), x, y + 11);
    ctx.textAlign = "right"; ctx.fillText(fmt(+hi.toFixed(2)), x + w, y + 11);
    ctx.textAlign = "left"; ctx.fillStyle = C.soft; ctx.fillText(label, x + w + 6, y - 1);
  }

  // ------------------------------------------------------------------ the layer x head grid
  // o: {layers: names, heads: per layer, value(l, h) -> number|null, lut, title, key (colour bar
  // label), note (a line under it), selected: [l, h], best: [l, h] or null, mark(l, h) -> bool
  // (a white-ringed dot in the cell's corner, markColor, explained by markLabel under the note),
  // group(l, h) -> bool (a dashed outline)}.  Returns where the cells are, for gridHit.
  function headGrid(canvas, o) {
    var W = canvas.clientWidth || 300, ctx0 = document.createElement("canvas").getContext("2d");
    var nLayers = o.layers.length, width = Math.max.apply(null, o.heads), rgb = lutColor(o.lut);
    ctx0.font = font(11);
    var labelW = 0;
    o.layers.forEach(function (n) { labelW = Math.max(labelW, ctx0.measureText(n).width); });
    var left = Math.ceil(labelW) + 12, top = 44, right = 6;
    var cw = Math.max(12, (W - left - right) / width), ch = Math.max(14, Math.min(24, cw * 0.8));
    var H = top + ch * nLayers + (o.markLabel ? 62 : 46);
    var ctx = prep(canvas, W, H), values = [], l, h;
    for (l = 0; l < nLayers; l++) for (h = 0; h < o.heads[l]; h++) { var v0 = o.value(l, h); if (v0 !== null) values.push(v0); }
    var smin = Math.min(0, Math.min.apply(null, values.length ? values : [0]));
    var smax = Math.max(smin + 1e-12, Math.max.apply(null, values.length ? values : [1]));
    title(ctx, o.title, W);
    ctx.font = font(11); ctx.fillStyle = C.soft; ctx.textAlign = "center";
    for (h = 0; h < width; h++) ctx.fillText(String(h), left + (h + 0.5) * cw, top - 14);
    ctx.textAlign = "left"; ctx.fillText("head →", 0, top - 14);
    for (l = 0; l < nLayers; l++) {
      ctx.textAlign = "right"; ctx.textBaseline = "middle"; ctx.fillStyle = C.ink;
      ctx.fillText(o.layers[l], left - 6, top + (l + 0.5) * ch);
      for (h = 0; h < width; h++) {
        var x = left + h * cw, y = top + l * ch;
        if (h >= o.heads[l]) {  // a padding slot: this layer has fewer heads
          ctx.fillStyle = "#f1f2f4"; ctx.fillRect(x + 0.5, y + 0.5, cw - 1, ch - 1); continue;
        }
        var s = o.value(l, h), t = s === null ? 0 : (s - smin) / (smax - smin);
        ctx.fillStyle = s === null ? "#d9dde3" : rgb(t);
        ctx.fillRect(x + 0.5, y + 0.5, cw - 1, ch - 1);
        if (s !== null && cw >= 30) {
          ctx.fillStyle = t > 0.6 ? "#1d232b" : "#fff"; ctx.textAlign = "center"; ctx.font = font(10);
          ctx.fillText(s.toFixed(2), x + cw / 2, y + ch / 2 + 0.5); ctx.font = font(11);
        }
        if (o.group && o.group(l, h)) {  // a dashed outline: the cells that go with the selected one
          ctx.save(); ctx.strokeStyle = C.sel; ctx.lineWidth = 1.6; ctx.setLineDash([3, 2]);
          ctx.strokeRect(x + 1.5, y + 1.5, cw - 3, ch - 3); ctx.restore();
        }
        if (o.mark && o.mark(l, h)) dot(ctx, x + cw - 5, y + 5, Math.min(3.5, ch / 5), o.markColor || C.green);
      }
    }
    if (o.best) {
      ctx.strokeStyle = C.best; ctx.lineWidth = 2;
      ctx.strokeRect(left + o.best[1] * cw + 1, top + o.best[0] * ch + 1, cw - 2, ch - 2);
    }
    ctx.strokeStyle = C.sel; ctx.lineWidth = 2.5;
    ctx.strokeRect(left + o.selected[1] * cw - 1, top + o.selected[0] * ch - 1, cw + 2, ch + 2);
    var by = top + ch * nLayers + 10;
    ctx.font = font(10.5);
    colourBar(ctx, rgb, left, by, Math.min(W - left - right - ctx.measureText(o.key).width - 8, 200), smin, smax, o.key);
    ctx.fillText(o.note, 0, by + 24);
    if (o.markLabel) { dot(ctx, 5, by + 45, 3.5, o.markColor || C.green); ctx.fillText(o.markLabel, 14, by + 39); }
    return { left: left, top: top, cw: cw, ch: ch, layers: nLayers, heads: o.heads };
  }
  // the (layer, head) under a mouse event, or null (padding slots are not heads)
  function gridHit(canvas, g, ev) {
    var b = canvas.getBoundingClientRect();
    var h = Math.floor((ev.clientX - b.left - g.left) / g.cw), l = Math.floor((ev.clientY - b.top - g.top) / g.ch);
    if (l < 0 || l >= g.layers || h < 0 || h >= g.heads[l]) return null;
    return [l, h];
  }
  function gridCell(canvas, g, l, h) {
    var b = canvas.getBoundingClientRect();
    return { x: b.left + g.left + (h + 0.5) * g.cw, y: b.top + g.top + (l + 0.5) * g.ch };
  }

  // ------------------------------------------------------------------ pointer, tooltip, PNG
  function local(ev, canvas) { var b = canvas.getBoundingClientRect(); return [ev.clientX - b.left, ev.clientY - b.top]; }
  function inside(ax, p) { return p[0] >= ax.x && p[0] <= ax.x + ax.w && p[1] >= ax.y && p[1] <= ax.y + ax.h; }
  // tip(ev, text) shows text by the pointer inside root; tip(ev, null) hides it
  function tipper(root, tipEl) {
    return function (ev, text) {
      if (!text) { tipEl.style.display = "none"; return; }
      var b = root.getBoundingClientRect();
      tipEl.textContent = text; tipEl.style.display = "block";
      var x = ev.clientX - b.left + 14, y = ev.clientY - b.top + 14;
      if (x + tipEl.offsetWidth > root.clientWidth) x = ev.clientX - b.left - tipEl.offsetWidth - 10;
      tipEl.style.left = x + "px"; tipEl.style.top = y + "px";
    };
  }
  // one PNG of the canvases as they sit on the page, under a heading and lines of text
  function composePng(canvases, heading, lines) {
    var r = window.devicePixelRatio || 1, pad = 14, x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    canvases.forEach(function (c) {
      var q = c.getBoundingClientRect();
      x0 = Math.min(x0, q.left); y0 = Math.min(y0, q.top); x1 = Math.max(x1, q.right); y1 = Math.max(y1, q.bottom);
    });
    var head = 28 + 16 * lines.length, out = document.createElement("canvas");
    out.width = Math.round((x1 - x0 + 2 * pad) * r); out.height = Math.round((y1 - y0 + head + pad) * r);
    var ctx = out.getContext("2d"); ctx.scale(r, r);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = C.ink; ctx.textBaseline = "top"; ctx.textAlign = "left";
    ctx.font = font(15, "650"); ctx.fillText(heading, pad, 8);
    ctx.font = font(12);
    lines.forEach(function (text, i) { ctx.fillText(text, pad, 28 + 16 * i); });
    canvases.forEach(function (c) {
      var q = c.getBoundingClientRect();
      ctx.drawImage(c, q.left - x0 + pad, q.top - y0 + head, q.width, q.height);
    });
    return out.toDataURL("image/png");
  }
  function download(href, name) {
    var a = document.createElement("a");
    a.href = href; a.download = name.replace(/[^A-Za-z0-9_.-]+/g, "_");
    document.body.appendChild(a); a.click(); a.remove();
  }
  // redraw(): called again (once a frame at most) whenever root changes width
  function onResize(root, redraw) {
    var pending = false, lastW = root.clientWidth;
    function changed() {
      if (pending || root.clientWidth === lastW) return;
      pending = true;
      requestAnimationFrame(function () { pending = false; lastW = root.clientWidth; redraw(); });
    }
    if (window.ResizeObserver) new ResizeObserver(changed).observe(root); else window.addEventListener("resize", changed);
  }

  return { widget: widget, bytes: bytes, typed: typed, show: show, register: register, C: C, font: font,
           lutColor: lutColor, fmt: fmt, ticks: ticks, fmtTick: fmtTick, prep: prep, title: title, Axes: Axes,
           drawAxes: drawAxes, vline: vline, polyline: polyline, fitText: fitText, haloText: haloText,
           legend: legend, hatch: hatch, UNSEEN_RGB: UNSEEN_RGB, tri: tri, dot: dot, percentile: percentile, colourBar: colourBar, headGrid: headGrid,
           gridHit: gridHit, gridCell: gridCell, local: local, inside: inside, tipper: tipper,
           composePng: composePng, download: download, onResize: onResize };
})();
