/**
 * Alert emails through the SMTP server of SMTP_URL (nodemailer). Its TCP connection is opened
 * by the SSRF guard (src/net/outbound.ts), so an SMTP host on a private or loopback address
 * must be in OUTBOUND_ALLOW like any other. smtp:// upgrades with STARTTLS when the server
 * offers it; smtps:// is TLS from the first byte.
 */
import os from 'node:os';
import nodemailer from 'nodemailer';
import { connectGuarded } from '../net/outbound.js';
import { emailSubject, emailText, type AlertEvent } from './event.js';
import { AlertSendError } from './webhook.js';

export interface EmailTarget {
  smtpUrl: string;
  to: readonly string[];
  from: string | undefined;
  outboundAllow: readonly string[];
  timeoutMs: number;
}

export interface EmailSender {
  send(event: AlertEvent): Promise<void>;
  close(): void;
}

export function createEmailSender(target: EmailTarget): EmailSender {
  const u = new URL(target.smtpUrl);
  const secure = u.protocol === 'smtps:';
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port ? Number(u.port) : secure ? 465 : 587;
  const user = decodeURIComponent(u.username);
  const transport = nodemailer.createTransport({
    host,
    port,
    secure,
    ...(user ? { auth: { user, pass: decodeURIComponent(u.password) } } : {}),
    connectionTimeout: target.timeoutMs,
    greetingTimeout: target.timeoutMs,
    socketTimeout: target.timeoutMs,
    // Every connection goes through the SSRF guard; nodemailer then speaks SMTP (and TLS) on it.
    getSocket: (_options, callback) => {
      connectGuarded(target.outboundAllow, host, port, { connectTimeoutMs: target.timeoutMs }).then(
        (connection) => callback(null, { connection }),
        (err: Error) => callback(err),
      );
    },
  });
  const from = target.from ?? `trainhook <trainhook@${os.hostname()}>`;
  return {
    async send(event) {
      try {
        await transport.sendMail({ from, to: [...target.to], subject: emailSubject(event), text: emailText(event), messageId: `<${event.id}@trainhook>` });
      } catch (err) {
        const e = err as Error & { code?: string; responseCode?: number };
        // 5xx answers (unknown mailbox, relay refused, bad login) will be the same next time.
        const permanent = (e.responseCode ?? 0) >= 500 || e.code === 'EAUTH' || e.code === 'SSRF_BLOCKED';
        throw new AlertSendError(`${e.code ? `${e.code}: ` : ''}${e.message}`.slice(0, 300), permanent);
      }
    },
    close: () => transport.close(),
  };
}
