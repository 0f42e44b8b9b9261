CREATE TYPE "public"."job_state" AS ENUM('queued', 'claimed', 'running', 'completed', 'failed', 'cancelled');--> statement-breakpoint
CREATE TABLE "callback_attempts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"event_id" text NOT NULL,
	"attempted_at" timestamp with time zone DEFAULT now() NOT NULL,
	"status_code" integer,
	"latency_ms" double precision,
	"error" text,
	"manual" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE TABLE "callback_events" (
	"id" text PRIMARY KEY NOT NULL,
	"seq" bigserial NOT NULL,
	"job_id" uuid NOT NULL,
	"type" text NOT NULL,
	"payload" jsonb NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"locked_by" text,
	"locked_until" timestamp with time zone,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"delivered_at" timestamp with time zone,
	CONSTRAINT "callback_events_seq_unique" UNIQUE("seq")
);
--> statement-breakpoint
CREATE TABLE "job_epochs" (
	"job_id" uuid NOT NULL,
	"epoch" integer NOT NULL,
	"metrics" jsonb NOT NULL,
	"epoch_seconds" double precision,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "job_epochs_job_id_epoch_pk" PRIMARY KEY("job_id","epoch")
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"seq" bigserial NOT NULL,
	"name" text NOT NULL,
	"state" "job_state" DEFAULT 'queued' NOT NULL,
	"phase" text DEFAULT 'queued' NOT NULL,
	"progress" double precision DEFAULT 0 NOT NULL,
	"current_epoch" integer DEFAULT 0 NOT NULL,
	"total_epochs" integer NOT NULL,
	"request" jsonb NOT NULL,
	"callback_url" text,
	"callback_secret" text,
	"requested_device" text DEFAULT 'auto' NOT NULL,
	"device" text,
	"node_id" text,
	"lease_expires_at" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"eta_seconds" integer,
	"metrics_current" jsonb,
	"metrics_best" jsonb,
	"error" jsonb,
	"dataset_info" jsonb,
	"model" jsonb,
	"artifacts" jsonb,
	"resources" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	CONSTRAINT "jobs_seq_unique" UNIQUE("seq")
);
--> statement-breakpoint
CREATE TABLE "seen_signatures" (
	"signature" text PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "callback_attempts" ADD CONSTRAINT "callback_attempts_event_id_callback_events_id_fk" FOREIGN KEY ("event_id") REFERENCES "public"."callback_events"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "callback_events" ADD CONSTRAINT "callback_events_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_epochs" ADD CONSTRAINT "job_epochs_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "callback_attempts_event_idx" ON "callback_attempts" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "callback_events_pending_idx" ON "callback_events" USING btree ("job_id","seq") WHERE state = 'pending';--> statement-breakpoint
CREATE INDEX "callback_events_due_idx" ON "callback_events" USING btree ("next_attempt_at") WHERE state = 'pending';--> statement-breakpoint
CREATE INDEX "jobs_state_seq_idx" ON "jobs" USING btree ("state","seq");--> statement-breakpoint
CREATE INDEX "jobs_created_at_idx" ON "jobs" USING btree ("created_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "jobs_lease_idx" ON "jobs" USING btree ("lease_expires_at") WHERE state in ('claimed', 'running');