/** `npm start`: load the config, start the server, stop cleanly on SIGINT/SIGTERM. */
import { ConfigError, loadConfig } from './core/config.js';
import { startServer } from './server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`trainhook: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const server = await startServer(config);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.logger.info({ signal }, 'stopping: running jobs are checkpointed and re-queued');
    server.close().then(
      () => process.exit(0),
      (err) => {
        server.logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err) => {
  process.stderr.write(`trainhook: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
