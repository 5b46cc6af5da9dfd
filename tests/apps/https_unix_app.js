// https on listen('3000') (a string port) and a net server on a Unix path, both on pmi's sockets.
const https = require('https');
const net = require('net');

https.createServer({}, (req, res) => res.end('tls\n')).listen('3000');
net.createServer((c) => c.end(`pid ${process.pid}\n`)).listen(process.env.APP_SOCK);
process.on('SIGTERM', () => process.exit(0));
