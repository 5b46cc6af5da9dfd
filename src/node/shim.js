// pmi's Node preload (embedded in the pmi binary; see src/node/shim.rs).
//
// pmi runs a Node app as `node [node_args] --preserve-symlinks-main /proc/self/fd/N SCRIPT ARGS`,
// fd N being a sealed memfd holding this file: nothing is written to disk, and the app's own
// NODE_OPTIONS are untouched. This file runs as the main module, closes fd N, removes itself
// from process.argv and process.execArgv (so the app, and the children it forks, see the command
// line they would see without pmi), patches net.Server.prototype.listen, and runs SCRIPT as the
// real main module (CommonJS or ESM).
//
// listen(port) / listen(port, host) / listen({port, host}) / listen(path) / listen({path}) on an
// address pmi owns (PMI_LISTEN_MAP, only when LISTEN_PID is this process) becomes
// listen({fd: N}) on pmi's socket: http, https, net and everything built on them. The callback,
// the 'listening' event and server.address() behave as usual (the address is pmi's). Without a
// map entry and with PMI_SHARE=1 (a cluster app without `listen`), a TCP port is asked of pmi
// over the IPC channel ({"pmi":"bind","port":P}); pmi answers with the socket (a NODE_HANDLE
// message), or an error that becomes the server's 'error' event. After a listen on pmi's socket
// the instance reports {"pmi":"listening","port":P} on the channel.
'use strict';
(function pmiPreload() {
  const fs = require('fs');
  const net = require('net');
  const path = require('path');
  const Module = require('module');
  const env = process.env;

  const self = /^\/proc\/self\/fd\/(\d+)$/.exec(process.argv[1] || '');
  if (self) {
    try { fs.closeSync(Number(self[1])); } catch (_) { /* already closed */ }
  }
  process.argv.splice(1, 1);
  const flag = process.execArgv.indexOf('--preserve-symlinks-main');
  if (flag >= 0) process.execArgv.splice(flag, 1);

  let owned = {};
  if (env.LISTEN_PID === String(process.pid)) {
    try { owned = JSON.parse(env.PMI_LISTEN_MAP || '{}') || {}; } catch (_) { owned = {}; }
  }
  const share = env.PMI_SHARE === '1' && typeof process.send === 'function';
  delete env.PMI_LISTEN_MAP;
  delete env.PMI_SHARE;
  const adopted = new Set();
  const pending = new Map();
  let keepAlive = null;

  const send = (msg) => {
    if (typeof process.send === 'function' && process.connected) {
      try { process.send(msg); } catch (_) { /* channel gone */ }
    }
  };

  // What a listen() call asks for: {port, host, opts} or {path}, or null (fd, handle, port 0…).
  const target = (args) => {
    const a = args[0];
    if (typeof a === 'number') return { port: a };
    if (typeof a === 'string') return /^\d+$/.test(a) ? { port: Number(a) } : { path: a };
    if (a && typeof a === 'object' && !(a instanceof net.Server) && a.fd === undefined &&
        a._handle === undefined && a.handle === undefined) {
      if (a.path !== undefined) return { path: String(a.path), opts: a };
      if (a.port !== undefined && /^\d+$/.test(String(a.port))) {
        return { port: Number(a.port), opts: a };
      }
    }
    return null;
  };

  const original = net.Server.prototype.listen;
  const listenOn = (server, handleOrFd, t, cb) => {
    const o = typeof handleOrFd === 'number' ? { fd: handleOrFd } : handleOrFd;
    if (typeof handleOrFd === 'number' && t.opts && t.opts.signal) o.signal = t.opts.signal;
    server.once('listening', () => {
      if (t.port !== undefined) send({ pmi: 'listening', port: t.port });
      else send({ pmi: 'listening', path: t.path });
    });
    return cb ? original.call(server, o, cb) : original.call(server, o);
  };

  process.on('internalMessage', (msg, handle) => {
    if (!msg || msg.cmd !== 'NODE_PMI_SOCKET') return;
    const p = pending.get(msg.port);
    pending.delete(msg.port);
    if (pending.size === 0 && keepAlive) { clearInterval(keepAlive); keepAlive = null; }
    if (!p) return;
    if (handle && !msg.error) {
      listenOn(p.server, handle, p.t, p.cb);
    } else {
      const e = new Error(`listen ${msg.code || 'EPMI'}: ${msg.error || 'pmi sent no socket'} (port ${msg.port})`);
      e.code = msg.code || 'EPMI';
      e.port = msg.port;
      p.server.emit('error', e);
    }
  });

  net.Server.prototype.listen = function listen(...args) {
    const t = target(args);
    const cb = typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
    if (t) {
      const key = t.port !== undefined ? String(t.port) : `unix:${t.path}`;
      const fd = owned[key];
      if (typeof fd === 'number' && !adopted.has(key)) {
        adopted.add(key);
        return listenOn(this, fd, t, cb);
      }
      if (share && t.port > 0 && !adopted.has(key) && !pending.has(t.port)) {
        adopted.add(key);
        pending.set(t.port, { server: this, t, cb });
        // The IPC channel does not keep Node alive by itself: wait for pmi's answer.
        if (!keepAlive) keepAlive = setInterval(() => {}, 1 << 30);
        send({ pmi: 'bind', port: t.port });
        return this;
      }
    }
    return original.apply(this, args);
  };

  const script = process.argv[1];
  if (script === undefined) return;
  process.argv[1] = path.resolve(script);
  let main = process.argv[1];
  // --preserve-symlinks-main was for this file only: resolve the app as Node would.
  try { main = fs.realpathSync(main); } catch (_) { /* Node reports the missing file */ }
  Module.runMain(main);
})();
