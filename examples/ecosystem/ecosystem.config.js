// An API in cluster mode next to a queue worker in fork mode, in PM2's
// process-file format: `pm2-runtime ecosystem.config.js` runs it, and so
// does `gm2-init --config ecosystem.config.js`.
module.exports = {
  apps: [
    {
      name: 'api',
      script: 'api.js',
      instances: 'max', // the CPUs the container may use, not the host's
      exec_mode: 'cluster',
      listen: ':3000', // gm2-init binds the port once for every instance (PM2 ignores the key)
      wait_ready: true,
      kill_timeout: 5000, // milliseconds, as in PM2
      env: { NODE_ENV: 'development' },
      env_production: { NODE_ENV: 'production' },
    },
    {
      name: 'worker',
      script: 'worker.js',
      exec_mode: 'fork',
      max_memory_restart: '200M',
      env: { NODE_ENV: 'development' },
      env_production: { NODE_ENV: 'production' },
    },
  ],
};
