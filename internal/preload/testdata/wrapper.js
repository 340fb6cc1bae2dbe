'use strict';
// A Node launcher that starts APP with the child_process API named by
// WRAP_MODE, the way npm, yarn or a custom launcher would. It prints nothing
// and exits with the app's status.
const cp = require('child_process');
const path = require('path');

const app = path.resolve(process.env.APP);
const node = process.execPath;
const done = (code) => process.exit(code === null ? 1 : code);
switch (process.env.WRAP_MODE) {
  case 'spawn':
    cp.spawn(node, [app], { stdio: 'inherit' }).on('exit', done);
    break;
  case 'exec':
    cp.exec(JSON.stringify(node) + ' ' + JSON.stringify(app), (err) => done(err ? 1 : 0));
    break;
  case 'execFile':
    cp.execFile(node, [app], (err) => done(err ? 1 : 0));
    break;
  case 'fork': {
    // fork puts its IPC channel at fd 3 unless the preload moves it.
    const child = cp.fork(app, [], { env: Object.assign({}, process.env, { FORKED: '1' }) });
    child.on('message', () => {});
    child.on('exit', done);
    break;
  }
  case 'spawnSync':
    done(cp.spawnSync(node, [app], { stdio: 'inherit' }).status);
    break;
  case 'execSync':
    cp.execSync(JSON.stringify(node) + ' ' + JSON.stringify(app), { stdio: 'inherit' });
    done(0);
    break;
  case 'execFileSync':
    cp.execFileSync(node, [app], { stdio: 'inherit' });
    done(0);
    break;
  default:
    throw new Error('unknown WRAP_MODE ' + process.env.WRAP_MODE);
}
