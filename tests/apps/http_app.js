// An unchanged pm2-style app: listens on 3000 (pmi's preload maps it to pmi's socket), says
// 'ready' the pm2 way, stops on SIGTERM or on pm2's 'shutdown' message.
const http = require('http');
const { execFileSync } = require('child_process');

const server = http.createServer((req, res) => {
  res.setHeader('Connection', 'close');
  if (req.url === '/child') {
    // What the app's own children inherit: fds and variables.
    const ls = execFileSync('ls', ['-l', '/proc/self/fd']).toString().split('\n')
      .filter((l) => l.includes('->')).map((l) => l.split(/\s+/).slice(-3).join(''));
    const env = execFileSync('sh', ['-c', 'echo "LP=$LISTEN_PID NC=$NODE_CHANNEL_FD PM=$PMI_LISTEN_MAP"']);
    const out = `${ls.join(' ')}\n${env}`;
    res.end(out);
    return;
  }
  if (req.url === '/info') {
    res.end(JSON.stringify({
      pid: process.pid, main: require.main === module, file: __filename,
      argv: process.argv.slice(1), execArgv: process.execArgv, address: server.address(),
      preload: globalThis.appPreloadRan === true, nodeOptions: process.env.NODE_OPTIONS,
    }) + '\n');
    return;
  }
  res.end(`pid ${process.pid}\n`);
});
server.listen(3000, () => {
  if (process.send) process.send('ready');
});
const stop = (why) => {
  console.log(`stopping: ${why}`);
  server.close(() => process.exit(0));
};
process.on('message', (m) => { if (m === 'shutdown') stop('shutdown message'); });
process.on('SIGTERM', () => stop('SIGTERM'));
