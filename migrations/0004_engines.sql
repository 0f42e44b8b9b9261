ALTER TABLE "models" ALTER COLUMN "framework" DROP DEFAULT;--> statement-breakpoint
ALTER TABLE "models" ALTER COLUMN "imgsz" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "engine" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "task" text;--> statement-breakpoint
UPDATE "jobs" SET "engine" = coalesce("request"->'model_config'->>'framework', 'ultralytics'), "task" = coalesce("request"->'model_config'->>'task', 'detect');--> statement-breakpoint
ALTER TABLE "jobs" ALTER COLUMN "engine" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ALTER COLUMN "task" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "train_args" jsonb;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "base_model" jsonb;
--> statement-breakpoint
ALTER TABLE "models" ADD COLUMN "train_args" jsonb;
