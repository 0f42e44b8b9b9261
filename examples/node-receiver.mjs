#!/usr/bin/env node
/**
 * A minimal receiver of trainhook callbacks (SPEC §3), verifying the Standard Webhooks
 * signature with the `standardwebhooks` package.
 *
 *   WEBHOOK_SECRET=<the callback_secret you sent with the job> PORT=9000 node examples/node-receiver.mjs
 *
 * Then submit a job with "callback_url": "http://<this host>:9000/hook" (a loopback or private
 * address must be allowed on the trainhook side: OUTBOUND_ALLOW=127.0.0.1).
 *
 * The key is the callback_secret: a `whsec_…` secret is base64 after the prefix (pass it as
 * is); any other secret is its UTF-8 bytes (pass them with { format: 'raw' }).
 * Answer 2xx only once the event is safely stored: anything else is retried (in order, with the
 * same webhook-id; keep the ids you have processed to drop duplicates). Answer 410 to stop
 * the callbacks of that job for good.
 */
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error('set WEBHOOK_SECRET to the callback_secret of your jobs');
  process.exit(2);
}
const webhook = secret.startsWith('whsec_')
  ? new Webhook(secret)
  : new Webhook(new TextEncoder().encode(secret), { format: 'raw' });
const seen = new Set(); // webhook-ids already processed (use a table in real life)

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let event;
      try {
        // Checks webhook-id, webhook-timestamp (±5 min) and webhook-signature over the raw body.
        event = webhook.verify(body, req.headers);
      } catch (err) {
        console.warn(`refused: ${err.message}`);
        res.writeHead(401).end();
        return;
      }
      const id = req.headers['webhook-id'];
      if (seen.has(id)) {
        res.writeHead(200).end(); // a retry of something already handled
        return;
      }
      seen.add(id);
      switch (event.type) {
        case 'training_progress':
          console.log(
            `${event.job_id} ${event.progress.phase} ${event.progress.percentage}% ` +
              `epoch ${event.progress.current_epoch}/${event.progress.total_epochs} mAP50 ${event.metrics.current.mAP50 ?? '-'}`,
          );
          break;
        case 'training_completed':
          console.log(`${event.job_id} completed in ${event.duration_seconds}s: model ${event.model.download_url} (expires ${event.model.expires_at})`);
          break;
        case 'training_failed':
          console.log(`${event.job_id} ${event.status}: ${event.error.code} ${event.error.message}`);
          break;
        default:
          console.log(`unknown event type ${event.type}`);
      }
      res.writeHead(204).end();
    });
  })
  .listen(Number(process.env.PORT ?? 9000), process.env.HOST ?? '127.0.0.1', function () {
    console.log(`listening on http://${this.address().address}:${this.address().port}/hook`);
  });
