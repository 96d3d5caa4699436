// The audit page's own check: fetch every leaf hash the signed checkpoint covers and recompute
// the RFC 9162 Merkle root here, with the browser's WebCrypto — then compare it with the root the
// registry signed. Interior node: SHA-256(0x01 || left || right); an odd node is carried up.
(function () {
  "use strict";
  var out = document.getElementById("browser-verdict");
  if (!out || !window.crypto || !window.crypto.subtle || !window.fetch) { return; }
  var size = Number(out.getAttribute("data-size"));
  var signed = out.getAttribute("data-root");
  function b64(bytes) {
    var s = "";
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return window.btoa(s);
  }
  function node(l, r) {
    var buf = new Uint8Array(65);
    buf[0] = 1;
    buf.set(l, 1);
    buf.set(r, 33);
    return window.crypto.subtle.digest("SHA-256", buf).then(function (h) { return new Uint8Array(h); });
  }
  function level(nodes) {
    if (nodes.length <= 1) { return Promise.resolve(nodes[0]); }
    var next = [];
    for (var i = 0; i + 1 < nodes.length; i += 2) { next.push(node(nodes[i], nodes[i + 1])); }
    if (nodes.length % 2 === 1) { next.push(Promise.resolve(nodes[nodes.length - 1])); }
    return Promise.all(next).then(level);
  }
  var root = size === 0
    ? window.crypto.subtle.digest("SHA-256", new Uint8Array(0)).then(function (h) { return new Uint8Array(h); })
    : fetch("/ui/audit/leaves?size=" + size, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("the registry answered " + r.status); } return r.arrayBuffer(); })
      .then(function (buf) {
        var all = new Uint8Array(buf);
        if (all.length !== size * 32) { throw new Error("expected " + size + " leaf hashes"); }
        var leaves = [];
        for (var i = 0; i < size; i++) { leaves.push(all.subarray(i * 32, i * 32 + 32)); }
        return level(leaves);
      });
  root.then(function (r) {
    var mine = b64(r);
    var ok = mine === signed;
    out.textContent = ok
      ? "Root recomputed in this browser from " + size + " entries: it matches the signed checkpoint."
      : "MISMATCH: this browser computed " + mine + " from the stored entries, not the signed root.";
    out.className = ok ? "ok" : "bad";
    out.setAttribute("data-verified", ok ? "true" : "false");
  }).catch(function (e) {
    out.textContent = "Could not check: " + e.message;
    out.className = "bad";
    out.setAttribute("data-verified", "error");
  });
})();
