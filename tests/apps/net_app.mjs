// An ESM app on the net module, asking for a host and a port, as people write them.
import net from 'node:net';

const port = Number(process.env.APP_PORT || 3000);
const server = net.createServer((c) => {
  c.end(`HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: ${`pid ${process.pid}\n`.length}\r\n\r\npid ${process.pid}\n`);
});
server.listen({ port, host: '0.0.0.0' });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
