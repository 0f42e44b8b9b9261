/**
 * `npm start`: load the config, start the server, stop cleanly on SIGINT/SIGTERM.
 *
 * An error nothing caught (uncaughtException, unhandledRejection) leaves the process in a state
 * no code planned for, so it is not kept running: the error is logged with its stack, running
 * jobs are stopped as on SIGTERM (their workers are signalled, keep last.pt, and the jobs are
 * re-queued to resume at the next start), and the process exits with status 1 so a supervisor
 * (systemd Restart=, Docker restart policy) starts it again. A stop that does not finish within
 * the workers' grace period plus a margin is cut short: the exit closes every worker's stdin
 * lifeline, which stops them too.
 */
import { ConfigError, loadConfig } from './core/config.js';
import { checkAlertConfig } from './alerts/index.js';
import { startServer, type ServerHandle } from './server.js';

/** Beyond the workers' SIGTERM→SIGKILL grace: time to record the re-queued jobs. */
const FATAL_STOP_MARGIN_MS = 15_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
    checkAlertConfig(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`trainhook: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }

  let server: ServerHandle | undefined;
  let stopping = false;
  const fatal = (kind: string, err: unknown) => {
    const stack = err instanceof Error ? (err.stack ?? String(err)) : String(err);
    if (stopping) {
      // A second error while stopping: already on the way out, say so and keep going.
      server?.logger.error({ kind, stack }, 'another uncaught error while stopping');
      return;
    }
    stopping = true;
    process.exitCode = 1;
    if (!server) {
      process.stderr.write(`trainhook: ${kind} while starting: ${stack}\n`);
      process.exit(1);
    }
    server.logger.fatal(
      { kind, stack },
      'uncaught error: stopping running jobs (re-queued, they resume at the next start) and exiting with status 1',
    );
    const deadline = setTimeout(() => {
      server?.logger.error('stop did not finish in time; exiting (workers stop as their stdin closes)');
      process.exit(1);
    }, config.cancelGraceSeconds * 1000 + FATAL_STOP_MARGIN_MS);
    server.close().then(
      () => {
        clearTimeout(deadline);
        process.exit(1);
      },
      (closeErr: unknown) => {
        server?.logger.error({ err: closeErr }, 'error while stopping after an uncaught error');
        process.exit(1);
      },
    );
  };
  process.on('uncaughtException', (err) => fatal('uncaughtException', err));
  process.on('unhandledRejection', (reason) => fatal('unhandledRejection', reason));

  server = await startServer(config);
  const started = server;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    started.logger.info({ signal }, 'stopping: running jobs are checkpointed and re-queued');
    started.close().then(
      () => process.exit(0),
      (err) => {
        started.logger.error({ err }, 'error while stopping');
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
