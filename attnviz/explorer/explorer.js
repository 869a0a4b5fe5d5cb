/* attnviz explorer: plain JavaScript on <canvas>, no library, no network.
   Called once per widget as (function (uid) {...})(uid); everything it touches lives under the
   element #attnviz-<uid>, and its API is window.attnvizExplorer[uid]. */
(function (uid) {
  "use strict";
  // by id; or, where a notebook runs the script before its output is in the document, in the
  // tree the script itself sits in
  var here = document.currentScript && document.currentScript.parentNode;
  function byId(id) { return document.getElementById(id) || (here && here.querySelector ? here.querySelector("#" + id) : null); }
  var root = byId("attnviz-" + uid), dataNode = byId("attnviz-" + uid + "-data");
  if (!root || !dataNode) return;
  var D = JSON.parse(dataNode.textContent);

  // ------------------------------------------------------------------ data
  function bytes(b64) {
    var s = atob(b64), n = s.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function f64(b64) { return b64 ? new Float64Array(bytes(b64).buffer) : null; }
  var cols = D.grid.cols, spc = D.grid.samples_per_col;
  var history = f64(D.history), forecast = f64(D.forecast), truth = f64(D.truth);
  // times are the series' own sample indices (history 0..L-1, forecast from L); column c covers
  // [t0 + c*spc, t0 + (c+1)*spc), t0 placing the history/forecast boundary at sample L (0 for
  // ViTime; minus the left padding for a forecaster that pads the history, as VisionTS does)
  var boundary = history.length, t0 = boundary - D.grid.history_boundary * spc;
  function at(c) { return t0 + c * spc; }
  function colOf(t) { return Math.floor((t - t0) / spc); }
  var nLayers = D.layers.length, width = Math.max.apply(null, D.heads);
  var offset = [], flat = 0;
  for (var li = 0; li < nLayers; li++) { offset.push(flat); flat += D.heads[li]; }
  var qmaps = new Uint16Array(bytes(D.maps).buffer);
  var curves = new Float32Array(bytes(D.curves).buffer);
  var lut = bytes(D.cmap);
  var nLag = D.lags.length;
  var rankOf = {}, best = D.ranking.length ? D.ranking[0] : null;
  D.ranking.forEach(function (r) { rankOf[r.layer + ":" + r.head] = r; });
  var lastReliable = -1;
  D.reliable.forEach(function (ok, i) { if (ok) lastReliable = i; });

  function headMap(l, h) {
    var idx = offset[l] + h, lo = D.map_lo[idx], s = (D.map_hi[idx] - lo) / 65535;
    var n = cols * cols, base = idx * n, out = new Float64Array(n);
    for (var i = 0; i < n; i++) out[i] = lo + qmaps[base + i] * s;
    return out;
  }
  function headCurve(l, h) {
    var base = (offset[l] + h) * nLag;
    return Array.prototype.slice.call(curves.subarray(base, base + nLag));
  }

  // ------------------------------------------------------------------ look
  var C = { blue: "#0173b2", orange: "#de8f05", green: "#029e73", red: "#d55e00", purple: "#cc78bc",
            grey: "#949494", ink: "#1d232b", soft: "#5b6470", line: "#c9d0d8", boundary: "#00b4d8",
            sel: "#00b4d8", best: "#39ff14", query: "rgba(213,94,0,0.15)" };
  var FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif";
  function font(px, weight) { return (weight || "") + " " + px + "px " + FONT; }
  function rgb(t) {
    var i = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
    return "rgb(" + lut[i] + "," + lut[i + 1] + "," + lut[i + 2] + ")";
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
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    yt.forEach(function (v) {
      var p = Math.round(ax.sy(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(ax.x - 4, p); ctx.lineTo(ax.x, p); ctx.stroke();
      ctx.fillText(fmtTick(v, yt.step), ax.x - 6, p);
    });
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
      else { ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(cx + 16, cy); ctx.stroke(); }
      ctx.setLineDash([]); ctx.fillStyle = C.ink; ctx.fillText(it.label, cx + 21, cy);
      cx += w;
    });
    ctx.restore();
    return cy + 15;
  }
  function tri(ctx, x, y, r) {  // downward triangle whose tip is at (x, y)
    ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x - r, y - 1.6 * r); ctx.lineTo(x + r, y - 1.6 * r); ctx.closePath();
    ctx.fill(); ctx.save(); ctx.strokeStyle = "#fff"; ctx.lineWidth = 0.8; ctx.stroke(); ctx.restore();
  }
  function percentile(sorted, p) {
    var pos = (sorted.length - 1) * p / 100, i = Math.floor(pos), f = pos - i;
    return i + 1 < sorted.length ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
  }
  function colsToSamples(c0, c1) { return fmt(at(c0)) + "–" + fmt(at(c1)); }

  // ------------------------------------------------------------------ elements and state
  function part(name) { return root.querySelector("[data-part='" + name + "']"); }
  var el = { layer: part("layer"), head: part("head"), scale: part("scale"), png: part("png"),
             info: part("info"), grid: part("grid"), heat: part("heatmap"), lag: part("lag"),
             series: part("series"), table: part("table"), peaks: part("peaks"), tip: part("tip") };
  var state = { layer: D.selected[0], head: D.selected[1], query: null, scale: "pct",
                heatmap: null, peakLabels: [], fundamentalLabel: null, lagProfile: null,
                seriesAttention: null, referencePeriods: D.reference_periods.slice() };
  state.query = Math.min(cols - 1, D.grid.history_cols + Math.floor(Math.max(cols - D.grid.history_cols, 1) / 2));
  var geom = {};   // where things were drawn, for hit tests (and tests)
  var cache = { key: null, map: null, image: null, vmin: 0, vmax: 1, log: false };

  function currentMap() {
    var key = state.layer + ":" + state.head + ":" + state.scale;
    if (cache.key === key) return cache;
    var m = headMap(state.layer, state.head), n = m.length, sorted = Array.prototype.slice.call(m);
    var log = state.scale === "log", vmin, vmax;
    if (log) {
      sorted = sorted.filter(function (v) { return v > 0; }).map(Math.log10);
      if (!sorted.length) sorted = [-12];
    }
    sorted.sort(function (a, b) { return a - b; });
    if (state.scale === "full") { vmin = sorted[0]; vmax = sorted[sorted.length - 1]; }
    else { vmin = percentile(sorted, 5); vmax = percentile(sorted, 99); }
    if (!(vmax > vmin)) { var pad = Math.max(Math.abs(vmin), 1e-12) * 1e-6; vmin -= pad; vmax += pad; }
    var off = document.createElement("canvas"); off.width = cols; off.height = cols;
    var octx = off.getContext("2d"), img = octx.createImageData(cols, cols);
    for (var i = 0; i < n; i++) {
      var v = log ? (m[i] > 0 ? Math.log10(m[i]) : vmin) : m[i];
      var t = Math.max(0, Math.min(1, (v - vmin) / (vmax - vmin))), j = Math.round(t * 255) * 3;
      img.data[4 * i] = lut[j]; img.data[4 * i + 1] = lut[j + 1]; img.data[4 * i + 2] = lut[j + 2]; img.data[4 * i + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    cache = { key: key, map: m, image: off, vmin: vmin, vmax: vmax, log: log };
    return cache;
  }
  function layerLabel(l) { return D.layers[l] + " (layer " + l + ")"; }

  // ------------------------------------------------------------------ score grid (overview)
  function drawGrid() {
    var W = el.grid.clientWidth || 300, ctx0 = document.createElement("canvas").getContext("2d");
    ctx0.font = font(11);
    var labelW = 0;
    D.layers.forEach(function (n) { labelW = Math.max(labelW, ctx0.measureText(n).width); });
    var left = Math.ceil(labelW) + 12, top = 44, right = 6;
    var cw = Math.max(12, (W - left - right) / width), ch = Math.max(14, Math.min(24, cw * 0.8));
    var H = top + ch * nLayers + 46;
    var ctx = prep(el.grid, W, H);
    var scores = D.ranking.map(function (r) { return r.score; }).filter(function (s) { return s !== null; });
    var smin = Math.min(0, Math.min.apply(null, scores.length ? scores : [0]));
    var smax = Math.max(smin + 1e-12, Math.max.apply(null, scores.length ? scores : [1]));
    ctx.font = font(12.5, "600"); ctx.fillStyle = C.ink; ctx.textBaseline = "top"; ctx.textAlign = "left";
    ctx.fillText("periodicity score per head", 0, 2);
    ctx.font = font(11); ctx.fillStyle = C.soft; ctx.textAlign = "center";
    for (var h = 0; h < width; h++) ctx.fillText(String(h), left + (h + 0.5) * cw, top - 14);
    ctx.textAlign = "left"; ctx.fillText("head →", 0, top - 14);
    for (var l = 0; l < nLayers; l++) {
      ctx.textAlign = "right"; ctx.textBaseline = "middle"; ctx.fillStyle = C.ink;
      ctx.fillText(D.layers[l], left - 6, top + (l + 0.5) * ch);
      for (h = 0; h < width; h++) {
        var x = left + h * cw, y = top + l * ch;
        if (h >= D.heads[l]) {  // a padding slot: this layer has fewer heads
          ctx.fillStyle = "#f1f2f4"; ctx.fillRect(x + 0.5, y + 0.5, cw - 1, ch - 1); continue;
        }
        var r = rankOf[l + ":" + h], s = r && r.score !== null ? r.score : null;
        ctx.fillStyle = s === null ? "#d9dde3" : rgb((s - smin) / (smax - smin));
        ctx.fillRect(x + 0.5, y + 0.5, cw - 1, ch - 1);
        if (s !== null && cw >= 30) {
          var t = (s - smin) / (smax - smin);
          ctx.fillStyle = t > 0.6 ? "#1d232b" : "#fff"; ctx.textAlign = "center"; ctx.font = font(10);
          ctx.fillText(s.toFixed(2), x + cw / 2, y + ch / 2 + 0.5); ctx.font = font(11);
        }
      }
    }
    if (best) {
      ctx.strokeStyle = C.best; ctx.lineWidth = 2;
      ctx.strokeRect(left + best.head * cw + 1, top + best.layer * ch + 1, cw - 2, ch - 2);
    }
    ctx.strokeStyle = C.sel; ctx.lineWidth = 2.5;
    ctx.strokeRect(left + state.head * cw - 1, top + state.layer * ch - 1, cw + 2, ch + 2);
    // colour bar + key
    var by = top + ch * nLayers + 10, bw = Math.min(W - left - right, 200);
    for (var i = 0; i < bw; i++) { ctx.fillStyle = rgb(i / (bw - 1)); ctx.fillRect(left + i, by, 1.5, 8); }
    ctx.fillStyle = C.ink; ctx.font = font(10.5); ctx.textBaseline = "top";
    ctx.textAlign = "left"; ctx.fillText(fmt(+smin.toFixed(2)), left, by + 11);
    ctx.textAlign = "right"; ctx.fillText(fmt(+smax.toFixed(2)), left + bw, by + 11);
    ctx.textAlign = "left"; ctx.fillStyle = C.soft;
    ctx.fillText("score", left + bw + 6, by - 1);
    ctx.fillText("outline: selected (blue), best (green)", 0, by + 24);
    geom.grid = { left: left, top: top, cw: cw, ch: ch };
  }
  function gridHit(ev) {
    var g = geom.grid, b = el.grid.getBoundingClientRect();
    var h = Math.floor((ev.clientX - b.left - g.left) / g.cw), l = Math.floor((ev.clientY - b.top - g.top) / g.ch);
    if (l < 0 || l >= nLayers || h < 0 || h >= D.heads[l]) return null;
    return [l, h];
  }

  // ------------------------------------------------------------------ time-time heatmap
  function drawHeatmap() {
    var W = el.heat.clientWidth || 420, left = 58, right = 66, topM = 44, bottom = 44;
    var side = Math.max(120, Math.min(W - left - right, 440)), H = topM + side + bottom;
    var ctx = prep(el.heat, W, H), c = currentMap();
    var ax = new Axes(left, topM, side, side, [at(0), at(cols)], [at(0), at(cols)], true);
    ctx.font = font(12.5, "600"); ctx.fillStyle = C.ink; ctx.textBaseline = "top"; ctx.textAlign = "left";
    fitText(ctx, "time-time attention: " + D.layers[state.layer] + ", head " + state.head, 0, 2, W);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(c.image, ax.x, ax.y, ax.w, ax.h);
    ctx.imageSmoothingEnabled = true;
    ax.clip(ctx);
    [[boundary, true], [boundary, false]].forEach(function (b) {
      ctx.save(); ctx.strokeStyle = C.boundary; ctx.lineWidth = 1.4; ctx.setLineDash([5, 4]); ctx.beginPath();
      if (b[1]) { ctx.moveTo(ax.sx(b[0]), ax.y); ctx.lineTo(ax.sx(b[0]), ax.y + ax.h); }
      else { ctx.moveTo(ax.x, ax.sy(b[0])); ctx.lineTo(ax.x + ax.w, ax.sy(b[0])); }
      ctx.stroke(); ctx.restore();
    });
    if (state.query !== null) {  // the linked query column (a row of the map)
      var y0 = ax.sy(at(state.query)), y1 = ax.sy(at(state.query + 1));
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.strokeRect(ax.x + 0.5, y0, ax.w - 1, y1 - y0);
      ctx.strokeStyle = C.red; ctx.lineWidth = 1; ctx.setLineDash([3, 2]); ctx.strokeRect(ax.x + 0.5, y0, ax.w - 1, y1 - y0); ctx.setLineDash([]);
    }
    ctx.restore();
    drawAxes(ctx, ax, { xlabel: "key time (samples)", ylabel: "query time (samples)", nx: 5, ny: 5 });
    // colour bar
    var cx = ax.x + ax.w + 10, cw = 11;
    for (var i = 0; i < side; i++) { ctx.fillStyle = rgb(1 - i / (side - 1)); ctx.fillRect(cx, ax.y + i, cw, 1.5); }
    ctx.strokeStyle = C.ink; ctx.lineWidth = 1; ctx.strokeRect(cx + 0.5, ax.y + 0.5, cw, side);
    var cb = new Axes(cx, ax.y, cw, side, [0, 1], [c.vmin, c.vmax]);
    ctx.font = font(10.5); ctx.fillStyle = C.ink; ctx.textAlign = "left"; ctx.textBaseline = "middle";
    var ct = ticks(c.vmin, c.vmax, 5);
    ct.forEach(function (v) {
      var p = Math.round(cb.sy(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(cx + cw, p); ctx.lineTo(cx + cw + 3, p); ctx.stroke();
      ctx.fillText(c.log ? fmt(Math.pow(10, v)) : fmtTick(v, ct.step), cx + cw + 5, p);
    });
    ctx.save(); ctx.translate(W - 4, ax.y + side / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    ctx.font = font(11); ctx.fillStyle = C.soft;
    ctx.fillText("attention (" + ({ pct: "p5–p99", full: "min–max", log: "log, p5–p99" })[state.scale] + ")", 0, 0); ctx.restore();
    legend(ctx, 4, 28, W - 8, [{ label: "history | forecast", color: C.boundary, dash: [5, 4] },
                              { label: "query column (a row)", color: C.red, dash: [3, 2], lw: 1 }]);
    geom.heat = ax;
    state.heatmap = { layer: state.layer, head: state.head, cols: cols, values: c.map, vmin: c.vmin, vmax: c.vmax };
  }

  // ------------------------------------------------------------------ lag curve
  function interp(xs, ys, x) {
    if (x <= xs[0]) return ys[0];
    for (var i = 1; i < xs.length; i++) if (x <= xs[i]) {
      var t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]); return ys[i - 1] * (1 - t) + ys[i] * t;
    }
    return ys[xs.length - 1];
  }
  function drawLag() {
    var W = el.lag.clientWidth || 420, H = geom.heatH || 480;
    var ctx = prep(el.lag, W, H), per = D.periods[offset[state.layer] + state.head];
    var vals = headCurve(state.layer, state.head), xs = [], ys = [];
    for (var i = 0; i < nLag; i++) if (D.curve_valid[i]) { xs.push(D.lags[i]); ys.push(vals[i]); }
    ctx.font = font(12.5, "600"); ctx.fillStyle = C.ink; ctx.textBaseline = "top"; ctx.textAlign = "left";
    ctx.fillText("lag curve: mean attention at each lag", 0, 2);
    // legend first: its height sets the top of the plot
    var items = [{ label: "lag curve", color: C.blue }, { label: "detected peaks", color: C.red, kind: "tri" }];
    // the fundamental's multiples only when no reference period is drawn (their lines would interleave)
    var fMultiples = state.referencePeriods.length ? 1 : 40;
    if (per.fundamental !== null) items.push({ label: "detected fundamental " + per.fundamental_label + (fMultiples > 1 ? " (×k)" : ""), color: C.purple, dash: [6, 3] });
    state.referencePeriods.forEach(function (p) { items.push({ label: "reference period " + fmt(p) + " (×k)", color: C.green, dash: [2, 3] }); });
    items.push({ label: "query col " + state.query + " row (right axis)", color: C.orange });
    if (lastReliable < nLag - 1) items.push({ label: "lags not used for peaks", color: "#e9ebee", kind: "box" });
    var topM = legend(ctx, 4, 26, W - 8, items) + 4;
    var left = 62, right = 56, bottom = 46;
    if (!xs.length) {  // one token column: no lag to show
      ctx.font = font(12); ctx.fillStyle = C.soft; ctx.textAlign = "center";
      ctx.fillText("no lags: the grid has one token column", W / 2, H / 2);
      state.peakLabels = []; state.fundamentalLabel = null; state.lagProfile = null;
      el.peaks.textContent = "no lags: one token column of " + fmt(spc) + " samples";
      return;
    }
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys), span = hi - lo || Math.abs(hi) || 1;
    var ax = new Axes(left, topM, W - left - right, H - topM - bottom,
                      [0, D.lags[nLag - 1] + spc / 2], [lo - 0.06 * span, hi + 0.28 * span]);
    if (lastReliable < nLag - 1) {
      var xu = lastReliable >= 0 ? (D.lags[lastReliable] + spc / 2) : 0;
      ctx.fillStyle = "#e9ebee"; ctx.fillRect(ax.sx(xu), ax.y, ax.x + ax.w - ax.sx(xu), ax.h);
    }
    drawAxes(ctx, ax, { xlabel: "lag (samples)", ylabel: "mean attention at lag", grid: true, ylabelGap: 56 });
    ax.clip(ctx);
    var xmax = ax.xr[1];
    state.referencePeriods.forEach(function (p) {
      ctx.fillStyle = "rgba(2,158,115,0.10)";
      for (var k = 1; k * p <= xmax && k <= 40; k++) {
        if (p >= spc)  // the +-half-column band around each multiple, where bands do not merge
          ctx.fillRect(ax.sx(k * p - spc / 2), ax.y, ax.sx(k * p + spc / 2) - ax.sx(k * p - spc / 2), ax.h);
        vline(ctx, ax, k * p, C.green, [2, 3], k === 1 ? 1.4 : 1);
      }
    });
    if (per.fundamental !== null) {
      for (var k = 1; k * per.fundamental <= xmax && k <= fMultiples; k++) {
        ctx.globalAlpha = k === 1 ? 1 : 0.45; vline(ctx, ax, k * per.fundamental, C.purple, [6, 3], 1.3); ctx.globalAlpha = 1;
      }
    }
    // the hovered query column's own row, on its own (right) axis
    var prof = null;
    if (state.query !== null && state.query > 0) {
      var m = currentMap().map, q = state.query, pl = [], pv = [];
      for (var kk = q - 1; kk >= 0; kk--) { pl.push((q - kk) * spc); pv.push(m[q * cols + kk]); }
      var pmax = Math.max.apply(null, pv), pmin = Math.min(0, Math.min.apply(null, pv));
      var pax = new Axes(ax.x, ax.y, ax.w, ax.h, ax.xr, [pmin, pmax > pmin ? pmin + (pmax - pmin) * 1.12 : pmin + 1]);
      polyline(ctx, pax, pl, pv, C.orange, 1.1);
      prof = { query: q, lags: pl, values: pv, axes: pax };
    }
    polyline(ctx, ax, xs, ys, C.blue, 1.6);
    ctx.fillStyle = C.blue;
    for (i = 0; i < xs.length; i++) { ctx.beginPath(); ctx.arc(ax.sx(xs[i]), ax.sy(ys[i]), 1.6, 0, 2 * Math.PI); ctx.fill(); }
    ctx.restore();
    // peaks: markers and labels (labels lifted to avoid one another)
    var placed = [], labels = [];
    ctx.font = font(10.5, "600"); ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    per.peaks.forEach(function (p, j) {
      var px = ax.sx(p), py = ax.sy(interp(xs, ys, p));
      ctx.fillStyle = C.red; tri(ctx, px, py - 2, 4.5);
      var text = per.labels[j], w = ctx.measureText(text).width + 4, y = py - 11;
      for (var tries = 0; tries < 4; tries++) {
        var hit = placed.some(function (r) { return Math.abs(r.x - px) < (r.w + w) / 2 && Math.abs(r.y - y) < 12; });
        if (!hit) break; y -= 12;
      }
      y = Math.max(y, ax.y + 12);
      haloText(ctx, text, px, y, C.red);
      placed.push({ x: px, y: y, w: w }); labels.push(text);
    });
    if (per.fundamental !== null && per.fundamental <= xmax) {
      ctx.font = font(10.5); ctx.textAlign = "left"; ctx.textBaseline = "top";
      haloText(ctx, "fundamental " + per.fundamental_label, ax.sx(per.fundamental) + 3, ax.y + 3, "#8a3d80");
    }
    if (prof) {  // right axis of the profile
      ctx.save(); ctx.font = font(10.5); ctx.fillStyle = C.orange; ctx.strokeStyle = C.orange;
      ctx.textAlign = "left"; ctx.textBaseline = "middle";
      var pt = ticks(prof.axes.yr[0], prof.axes.yr[1], 4);
      pt.forEach(function (v) {
        var p = Math.round(prof.axes.sy(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(ax.x + ax.w, p); ctx.lineTo(ax.x + ax.w + 4, p); ctx.stroke();
        ctx.fillText(fmtTick(v, pt.step), ax.x + ax.w + 6, p);
      });
      ctx.restore();
      delete prof.axes;
    }
    state.peakLabels = labels;
    state.fundamentalLabel = per.fundamental_label;
    state.lagProfile = prof;
    geom.lag = ax;
    el.peaks.textContent = (per.peaks.length ? "peaks (samples): " + per.labels.join(", ") : "no peaks detected") +
      " · fundamental: " + (per.fundamental_label === null ? "none" : per.fundamental_label + " samples") +
      " · 1 column = " + fmt(spc) + " samples";
  }

  // ------------------------------------------------------------------ series + linked attention
  function drawSeries() {
    var W = el.series.clientWidth || 800, H = 330, left = 62, right = 16;
    var ctx = prep(el.series, W, H);
    ctx.font = font(12.5, "600"); ctx.fillStyle = C.ink; ctx.textBaseline = "top"; ctx.textAlign = "left";
    fitText(ctx, "series · attention of query column " + state.query + " (time " +
            colsToSamples(state.query, state.query + 1) + ") onto each key column", 0, 2, W);
    var items = [{ label: "history", color: C.blue }];
    if (forecast) items.push({ label: "forecast", color: C.orange });
    if (truth) items.push({ label: "truth", color: "#555", dash: [2, 2] });
    items.push({ label: "history | forecast", color: C.boundary, dash: [5, 4] });
    items.push({ label: "query column", color: C.query, kind: "box" });
    items.push({ label: "keys after the query (faded)", color: "#bfc5cc", kind: "box" });
    state.referencePeriods.forEach(function (p) { items.push({ label: "query − k·" + fmt(p) + " (reference)", color: C.green, dash: [2, 3] }); });
    var topM = legend(ctx, 4, 26, W - 8, items) + 4;
    var L = history.length, all = Array.prototype.slice.call(history);
    if (forecast) all = all.concat(Array.prototype.slice.call(forecast));
    if (truth) all = all.concat(Array.prototype.slice.call(truth));
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), pad = 0.08 * ((hi - lo) || 1);
    var xr = [Math.min(0, at(0)), Math.max(at(cols), L + (forecast ? forecast.length : 0))];
    var h1 = Math.round((H - topM - 44) * 0.56), gap = 8, h2 = H - topM - 44 - h1 - gap;
    var ax = new Axes(left, topM, W - left - right, h1, xr, [lo - pad, hi + pad]);
    var bx = new Axes(left, topM + h1 + gap, W - left - right, h2, xr, [0, 1]);
    var q = state.query, m = currentMap().map, row = [];
    for (var k = 0; k < cols; k++) row.push(m[q * cols + k]);
    var rmax = Math.max.apply(null, row);
    bx.yr = [0, rmax > 0 ? rmax * 1.1 : 1];
    [ax, bx].forEach(function (a) {
      ctx.fillStyle = C.query; ctx.fillRect(a.sx(at(q)), a.y, a.sx(at(q + 1)) - a.sx(at(q)), a.h);
    });
    drawAxes(ctx, ax, { ylabel: "value", grid: true, xticks: false, ny: 4, ylabelGap: 54 });
    drawAxes(ctx, bx, { xlabel: "time (samples)", ylabel: "attention", grid: true, ny: 3, ylabelGap: 54 });
    ax.clip(ctx);
    var xsH = []; for (var i = 0; i < L; i++) xsH.push(i);
    if (truth) { var xt = []; for (i = 0; i < truth.length; i++) xt.push(L + i); polyline(ctx, ax, xt, truth, "#555", 1.1, [2, 2]); }
    polyline(ctx, ax, xsH, history, C.blue, 1.3);
    if (forecast) { var xf = []; for (i = 0; i < forecast.length; i++) xf.push(L + i); polyline(ctx, ax, xf, forecast, C.orange, 1.3); }
    vline(ctx, ax, boundary, C.boundary, [5, 4], 1.3);
    ctx.restore();
    bx.clip(ctx);
    for (k = 0; k < cols; k++) {
      var x0 = bx.sx(at(k)), x1 = bx.sx(at(k + 1)), y = bx.sy(row[k]);
      ctx.fillStyle = k > q ? "#bfc5cc" : ((k + 0.5) < D.grid.history_boundary ? C.blue : C.orange);
      ctx.globalAlpha = k > q ? 0.6 : 0.88;
      ctx.fillRect(x0 + 0.3, y, Math.max(0.5, x1 - x0 - 0.6), bx.y + bx.h - y);
    }
    ctx.globalAlpha = 1;
    vline(ctx, bx, boundary, C.boundary, [5, 4], 1.3);
    var centre = at(q + 0.5);
    state.referencePeriods.forEach(function (p) {
      for (var kk = 1; centre - kk * p >= bx.xr[0] && kk <= 200; kk++) vline(ctx, bx, centre - kk * p, C.green, [2, 3], 1.1);
    });
    ctx.restore();
    geom.series = ax; geom.bars = bx;
    state.seriesAttention = { query: q, values: row };
  }

  // ------------------------------------------------------------------ table, selectors, info
  function num(v, d) { return v === null || v === undefined ? "–" : v.toFixed(d); }
  function buildTable() {
    var head = "<thead><tr><th>#</th><th>layer · head</th><th title='ranking score'>score</th>" +
      "<th title='fundamental of the lag curve (samples)'>period</th><th title='agreement: correlation with the series ACF'>agr.</th>" +
      "<th title='consistency: period match with the series'>cons.</th><th title='clarity of the period estimate'>clar.</th></tr></thead>";
    var body = D.ranking.map(function (r) {
      return "<tr data-l='" + r.layer + "' data-h='" + r.head + "'><td>" + r.rank + "</td><td></td><td>" + num(r.score, 3) + "</td><td>" + num(r.period, 1) + "</td><td>" + num(r.agreement, 2) +
        "</td><td>" + num(r.consistency, 2) + "</td><td>" + num(r.clarity, 2) + "</td></tr>";
    }).join("");
    el.table.innerHTML = head + "<tbody>" + body + "</tbody>";
    var rows = el.table.querySelectorAll("tbody tr");
    for (var i = 0; i < rows.length; i++) rows[i].children[1].textContent = D.layers[+rows[i].getAttribute("data-l")] + " · " + rows[i].getAttribute("data-h");
  }
  function fillHeads() {
    var opts = "";
    for (var h = 0; h < D.heads[state.layer]; h++) opts += "<option value='" + h + "'>head " + h + "</option>";
    el.head.innerHTML = opts; el.head.value = String(state.head);
  }
  function updateInfo() {
    var r = rankOf[state.layer + ":" + state.head], per = D.periods[offset[state.layer] + state.head];
    el.info.textContent = layerLabel(state.layer) + " · head " + state.head +
      (r ? " · rank " + r.rank + "/" + D.ranking.length + " · score " + num(r.score, 3) : "") +
      " · fundamental " + (per.fundamental_label === null ? "none" : per.fundamental_label + " samples");
    var rows = el.table.querySelectorAll("tbody tr");
    for (var i = 0; i < rows.length; i++) {
      var on = +rows[i].getAttribute("data-l") === state.layer && +rows[i].getAttribute("data-h") === state.head;
      rows[i].className = on ? "avx-sel" : "";
    }
  }
  function drawAll() {
    drawGrid(); drawHeatmap();
    var stacked = el.lag.getBoundingClientRect().top > el.heat.getBoundingClientRect().top + 10;
    geom.heatH = stacked ? 360 : (el.heat.clientHeight || 510);
    drawLag(); drawSeries(); updateInfo();
  }
  function select(l, h) {
    if (l < 0 || l >= nLayers || h < 0 || h >= D.heads[l]) throw new Error("no head " + h + " in layer " + l);
    state.layer = l; state.head = h;
    el.layer.value = String(l); fillHeads();
    drawAll();
    var row = el.table.querySelector("tr.avx-sel");
    if (row && row.scrollIntoView && el.table.parentNode) {
      var wrap = el.table.parentNode, rt = row.offsetTop, top = wrap.scrollTop;
      if (rt < top + 20 || rt > top + wrap.clientHeight - 20) wrap.scrollTop = rt - wrap.clientHeight / 2;
    }
  }
  function setQuery(q) {
    q = Math.max(0, Math.min(cols - 1, q | 0));
    if (q === state.query) return;
    state.query = q; drawHeatmap(); drawLag(); drawSeries();
  }

  // ------------------------------------------------------------------ tooltips and events
  function tip(ev, text) {
    if (!text) { el.tip.style.display = "none"; return; }
    var b = root.getBoundingClientRect();
    el.tip.textContent = text; el.tip.style.display = "block";
    var x = ev.clientX - b.left + 14, y = ev.clientY - b.top + 14;
    if (x + el.tip.offsetWidth > root.clientWidth) x = ev.clientX - b.left - el.tip.offsetWidth - 10;
    el.tip.style.left = x + "px"; el.tip.style.top = y + "px";
  }
  function local(ev, canvas) { var b = canvas.getBoundingClientRect(); return [ev.clientX - b.left, ev.clientY - b.top]; }
  function inside(ax, p) { return p[0] >= ax.x && p[0] <= ax.x + ax.w && p[1] >= ax.y && p[1] <= ax.y + ax.h; }

  el.grid.addEventListener("mousemove", function (ev) {
    var hit = gridHit(ev);
    if (!hit) { tip(ev, null); el.grid.style.cursor = "default"; return; }
    el.grid.style.cursor = "pointer";
    var r = rankOf[hit[0] + ":" + hit[1]], per = D.periods[offset[hit[0]] + hit[1]];
    tip(ev, D.layers[hit[0]] + " head " + hit[1] + (r ? " · rank " + r.rank + " · score " + num(r.score, 3) : "") +
        " · period " + (per.fundamental_label === null ? "none" : per.fundamental_label));
  });
  el.grid.addEventListener("mouseleave", function (ev) { tip(ev, null); });
  el.grid.addEventListener("click", function (ev) { var hit = gridHit(ev); if (hit) select(hit[0], hit[1]); });
  el.heat.addEventListener("mousemove", function (ev) {
    var ax = geom.heat, p = local(ev, el.heat);
    if (!ax || !inside(ax, p)) { tip(ev, null); return; }
    var q = Math.min(cols - 1, colOf(ax.iy(p[1]))), k = Math.min(cols - 1, colOf(ax.ix(p[0])));
    setQuery(q);
    tip(ev, "query col " + q + " (t " + colsToSamples(q, q + 1) + ") → key col " + k + " (t " + colsToSamples(k, k + 1) +
        "): " + fmt(currentMap().map[q * cols + k]));
  });
  el.heat.addEventListener("mouseleave", function (ev) { tip(ev, null); });
  el.series.addEventListener("mousemove", function (ev) {
    var ax = geom.series, p = local(ev, el.series);
    if (!ax || p[0] < ax.x || p[0] > ax.x + ax.w || p[1] < ax.y || p[1] > geom.bars.y + geom.bars.h) { tip(ev, null); return; }
    var t = ax.ix(p[0]), q = colOf(t);
    if (q < 0 || q >= cols) { tip(ev, null); return; }
    setQuery(q);
    tip(ev, "t = " + Math.round(t) + " samples → query col " + q);
  });
  el.series.addEventListener("mouseleave", function (ev) { tip(ev, null); });
  el.layer.addEventListener("change", function () { select(+el.layer.value, Math.min(state.head, D.heads[+el.layer.value] - 1)); });
  el.head.addEventListener("change", function () { select(state.layer, +el.head.value); });
  el.scale.addEventListener("change", function () { state.scale = el.scale.value; drawAll(); });
  el.table.addEventListener("click", function (ev) {
    var tr = ev.target.closest ? ev.target.closest("tr[data-l]") : null;
    if (tr) select(+tr.getAttribute("data-l"), +tr.getAttribute("data-h"));
  });

  // ------------------------------------------------------------------ PNG of the current view
  function png() {
    var r = window.devicePixelRatio || 1, pad = 14;
    var list = [el.grid, el.heat, el.lag, el.series], x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    list.forEach(function (c) {
      var q = c.getBoundingClientRect();
      x0 = Math.min(x0, q.left); y0 = Math.min(y0, q.top); x1 = Math.max(x1, q.right); y1 = Math.max(y1, q.bottom);
    });
    var head = 44, out = document.createElement("canvas");
    out.width = Math.round((x1 - x0 + 2 * pad) * r); out.height = Math.round((y1 - y0 + head + pad) * r);
    var ctx = out.getContext("2d"); ctx.scale(r, r);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = C.ink; ctx.textBaseline = "top"; ctx.textAlign = "left";
    ctx.font = font(15, "650"); ctx.fillText(root.querySelector(".avx-title").textContent, pad, 8);
    ctx.font = font(12); ctx.fillText(el.info.textContent + " · " + el.peaks.textContent, pad, 28);
    list.forEach(function (c) {
      var q = c.getBoundingClientRect();
      ctx.drawImage(c, q.left - x0 + pad, q.top - y0 + head, q.width, q.height);
    });
    return out.toDataURL("image/png");
  }
  el.png.addEventListener("click", function () {
    var a = document.createElement("a");
    a.href = png(); a.download = "attnviz_" + D.layers[state.layer].replace(/[^A-Za-z0-9_.-]+/g, "_") + "_head" + state.head + ".png";
    document.body.appendChild(a); a.click(); a.remove();
  });

  // ------------------------------------------------------------------ start
  var lopts = "";
  for (var l2 = 0; l2 < nLayers; l2++) lopts += "<option value='" + l2 + "'></option>";
  el.layer.innerHTML = lopts;
  for (l2 = 0; l2 < nLayers; l2++) el.layer.options[l2].textContent = l2 + " · " + D.layers[l2] + " (" + D.heads[l2] + " heads)";
  el.layer.value = String(state.layer);
  fillHeads(); buildTable();
  var fb = root.querySelector(".avx-fallback"); if (fb) fb.remove();
  root.querySelector(".avx-body").style.display = "";
  drawAll();
  var pending = false, lastW = root.clientWidth;
  function onResize() {
    if (pending || root.clientWidth === lastW) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; lastW = root.clientWidth; cache.key = null; drawAll(); });
  }
  if (window.ResizeObserver) new ResizeObserver(onResize).observe(root); else window.addEventListener("resize", onResize);

  var api = {
    uid: uid, state: state, data: D, select: select, setQuery: setQuery, png: png, redraw: drawAll,
    // client coordinates (for tests and scripting): centre of a score-grid cell / of a heatmap cell
    gridCell: function (l, h) {
      var g = geom.grid, b = el.grid.getBoundingClientRect();
      return { x: b.left + g.left + (h + 0.5) * g.cw, y: b.top + g.top + (l + 0.5) * g.ch };
    },
    heatCell: function (q, k) {
      var ax = geom.heat, b = el.heat.getBoundingClientRect();
      return { x: b.left + ax.sx(at(k + 0.5)), y: b.top + ax.sy(at(q + 0.5)) };
    },
    seriesPoint: function (t) {
      var ax = geom.series, b = el.series.getBoundingClientRect();
      return { x: b.left + ax.sx(t), y: b.top + ax.y + ax.h / 2 };
    }
  };
  window.attnvizExplorer = window.attnvizExplorer || {};
  window.attnvizExplorer[uid] = api;
})
