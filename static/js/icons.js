/* Example icons for the Galaxy Zoo answers: small drawings of what each answer looks like, keyed by
   "<question>_<answer>" (the tree's column names). Answers without an icon show their text only. */
(function () {
  "use strict";
  var glow = '<defs><radialGradient id="zg" cx="50%" cy="50%" r="50%"><stop offset="0" stop-color="#fffbe8"/>' +
    '<stop offset=".45" stop-color="#ffd98a"/><stop offset="1" stop-color="#ffb347" stop-opacity="0"/></radialGradient></defs>';
  function wrap(body) {
    return '<svg viewBox="0 0 64 64" aria-hidden="true" focusable="false">' + glow + body + "</svg>";
  }
  function blob(rx, ry, rot) {
    return '<ellipse cx="32" cy="32" rx="' + rx + '" ry="' + ry + '" fill="url(#zg)" transform="rotate(' + (rot || 0) + ' 32 32)"/>';
  }
  function core(r) { return '<circle cx="32" cy="32" r="' + r + '" fill="#fffbe8"/>'; }
  function arms(n, wind, color) {
    var out = "", i, t, pts;
    for (i = 0; i < n; i++) {
      pts = [];
      for (t = 0; t <= 1.001; t += 0.1) {
        var ang = (i * 2 * Math.PI) / n + t * wind, r = 5 + t * 22;
        pts.push((32 + r * Math.cos(ang)).toFixed(1) + "," + (32 + r * Math.sin(ang)).toFixed(1));
      }
      out += '<polyline points="' + pts.join(" ") + '" fill="none" stroke="' + (color || "#9fc4ff") + '" stroke-width="3" stroke-linecap="round"/>';
    }
    return out;
  }
  function bar(len, width, opacity) {
    return '<rect x="' + (32 - len / 2) + '" y="' + (32 - width / 2) + '" width="' + len + '" height="' + width +
      '" rx="' + width / 2 + '" fill="#fff1c4" opacity="' + opacity + '" transform="rotate(-25 32 32)"/>';
  }
  function disk(extra) {
    return '<ellipse cx="32" cy="32" rx="26" ry="22" fill="#2a3f7a" opacity=".7"/>' + (extra || "");
  }
  function edgeOn(bulge) {
    return '<ellipse cx="32" cy="32" rx="28" ry="4" fill="#ffd98a" opacity=".9"/>' + (bulge || "");
  }
  function text(t) {
    return '<text x="32" y="41" text-anchor="middle" font-size="26" font-weight="700" fill="#eef2fa" font-family="system-ui,sans-serif">' + t + "</text>";
  }
  function bulge(r) { return (r ? '<circle cx="32" cy="32" r="' + r + '" fill="url(#zg)"/>' + core(r / 3) : ""); }
  var star = '<path d="M32 8 L36 28 L56 32 L36 36 L32 56 L28 36 L8 32 L28 28 Z" fill="#fffbe8"/><circle cx="32" cy="32" r="5" fill="#fff"/>';
  var merger = blob(14, 10, -20).replace('cx="32" cy="32"', 'cx="24" cy="28"') +
    '<ellipse cx="44" cy="40" rx="9" ry="7" fill="url(#zg)"/><path d="M30 36 Q40 56 58 50" stroke="#9fc4ff" stroke-width="2" fill="none" opacity=".8"/>';

  var ICONS = {
    "smooth-or-featured_smooth": wrap(blob(20, 20) + core(4)),
    "smooth-or-featured_featured-or-disk": wrap(disk(arms(2, 3.2)) + core(4)),
    "smooth-or-featured_artifact": wrap(star),
    "how-rounded_round": wrap(blob(22, 22) + core(4)),
    "how-rounded_in-between": wrap(blob(24, 15, -30) + core(4)),
    "how-rounded_cigar-shaped": wrap(blob(28, 7, -30) + core(3)),
    "disk-edge-on_yes": wrap(edgeOn(core(4))),
    "disk-edge-on_no": wrap(disk(arms(2, 3.2)) + core(4)),
    "edge-on-bulge_rounded": wrap(edgeOn('<circle cx="32" cy="32" r="10" fill="url(#zg)"/>' + core(4))),
    "edge-on-bulge_boxy": wrap(edgeOn('<rect x="23" y="23" width="18" height="18" rx="3" fill="#ffd98a"/>' + core(4))),
    "edge-on-bulge_none": wrap(edgeOn()),
    "bar_strong": wrap(disk(arms(2, 2.2)) + bar(34, 9, 1)),
    "bar_weak": wrap(disk(arms(2, 2.2)) + bar(22, 6, 0.75)),
    "bar_no": wrap(disk(arms(2, 3)) + core(5)),
    "has-spiral-arms_yes": wrap(disk(arms(2, 3.4)) + core(4)),
    "has-spiral-arms_no": wrap(disk() + core(5)),
    "spiral-winding_tight": wrap(arms(2, 5.5) + core(4)),
    "spiral-winding_medium": wrap(arms(2, 3.5) + core(4)),
    "spiral-winding_loose": wrap(arms(2, 1.8) + core(4)),
    "spiral-arm-count_1": wrap(arms(1, 3.4) + core(4)),
    "spiral-arm-count_2": wrap(arms(2, 3.4) + core(4)),
    "spiral-arm-count_3": wrap(arms(3, 3.0) + core(4)),
    "spiral-arm-count_4": wrap(arms(4, 2.6) + core(4)),
    "spiral-arm-count_more-than-4": wrap(arms(6, 2.2) + core(4)),
    "spiral-arm-count_cant-tell": wrap(disk() + text("?")),
    "bulge-size_none": wrap(disk(arms(2, 3))),
    "bulge-size_small": wrap(disk(arms(2, 3)) + bulge(5)),
    "bulge-size_moderate": wrap(disk(arms(2, 3)) + bulge(9)),
    "bulge-size_large": wrap(disk(arms(2, 3)) + bulge(13)),
    "bulge-size_dominant": wrap(disk(arms(2, 3)) + bulge(19)),
    "merging_merger": wrap(merger),
    "merging_major-disturbance": wrap(blob(22, 14, -20) + '<path d="M14 44 Q30 62 54 48 M40 14 Q56 8 60 22" stroke="#9fc4ff" stroke-width="3" fill="none"/>' + core(4)),
    "merging_minor-disturbance": wrap(blob(20, 16, -20) + '<path d="M40 46 Q52 56 60 50" stroke="#9fc4ff" stroke-width="2.5" fill="none"/>' + core(4)),
    "merging_none": wrap(blob(20, 16, -20) + core(4)),
  };
  window.ZooIcons = {
    get: function (question, answer) { return ICONS[question + "_" + answer] || null; },
  };
})();
