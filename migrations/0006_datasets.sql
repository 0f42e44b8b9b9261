CREATE TABLE "datasets" (
	"id" uuid PRIMARY KEY NOT NULL,
	"sha256" text NOT NULL,
	"name" text,
	"format" text NOT NULL,
	"task" text NOT NULL,
	"info" jsonb NOT NULL,
	"archive_bytes" bigint NOT NULL,
	"disk_bytes" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "datasets_sha256_unique" UNIQUE("sha256")
);
--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "dataset_sha256" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "disk_bytes" bigint;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "files_removed_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "datasets_created_at_idx" ON "datasets" USING btree ("created_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "jobs_dataset_sha256_idx" ON "jobs" USING btree ("dataset_sha256");