ALTER TABLE "datasets" ADD COLUMN "origin" text DEFAULT 'upload' NOT NULL;--> statement-breakpoint
ALTER TABLE "datasets" ADD COLUMN "parent_id" uuid;--> statement-breakpoint
ALTER TABLE "datasets" ADD COLUMN "stats" jsonb;--> statement-breakpoint
ALTER TABLE "datasets" ADD COLUMN "validation" jsonb;
