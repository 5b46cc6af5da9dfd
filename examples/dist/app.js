// Stand-in for a built pm2 app (examples/pm2-app.yaml): logs, then stays up until stopped.
const instance = process.env.NODE_APP_INSTANCE || '0';
console.log(`pm2-app ${instance}: started in ${process.env.NODE_ENV || 'development'} mode`);
const timer = setInterval(() => console.log(`pm2-app ${instance}: alive`), 5000);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    console.log(`pm2-app ${instance}: ${sig}, exiting`);
    clearInterval(timer);
    process.exit(0);
  });
}
