ALTER TABLE "callback_events" ALTER COLUMN "payload" SET DATA TYPE json;--> statement-breakpoint
ALTER TABLE "callback_events" ADD COLUMN "last_status_code" integer;--> statement-breakpoint
ALTER TABLE "callback_events" ADD COLUMN "manual" boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX "callback_events_job_idx" ON "callback_events" USING btree ("job_id","seq");