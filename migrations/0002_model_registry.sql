CREATE TABLE "model_exports" (
	"model_id" uuid NOT NULL,
	"format" text NOT NULL,
	"file_name" text NOT NULL,
	"size_bytes" integer NOT NULL,
	"sha256" text NOT NULL,
	"check" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_exports_model_id_format_pk" PRIMARY KEY("model_id","format")
);
--> statement-breakpoint
CREATE TABLE "models" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"framework" text DEFAULT 'ultralytics' NOT NULL,
	"task" text NOT NULL,
	"format" text DEFAULT 'pytorch' NOT NULL,
	"file_name" text NOT NULL,
	"classes" jsonb NOT NULL,
	"imgsz" integer NOT NULL,
	"metrics" jsonb,
	"size_bytes" integer NOT NULL,
	"sha256" text NOT NULL,
	"source_job_id" uuid,
	"base_model" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "models_source_job_id_unique" UNIQUE("source_job_id")
);
--> statement-breakpoint
ALTER TABLE "model_exports" ADD CONSTRAINT "model_exports_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "models" ADD CONSTRAINT "models_source_job_id_jobs_id_fk" FOREIGN KEY ("source_job_id") REFERENCES "public"."jobs"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "models_created_at_idx" ON "models" USING btree ("created_at" DESC NULLS LAST);