-- The tables the webhook-ingest function writes: the upstream app's training_jobs (one row per
-- training job, its id the job_id sent to trainhook) and training_webhook_events (each callback
-- applied once). Idempotent: an app that already has training_jobs keeps it as it is.

create table if not exists public.training_jobs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  -- The app's dataset; add `references public.datasets (id)` where that table exists.
  dataset_id uuid not null,

  -- Model configuration, as sent in POST /api/v1/train
  model_name text not null,
  base_model text not null,
  epochs integer not null,
  batch_size integer not null,
  image_size integer not null,
  learning_rate double precision not null,

  -- Status and progress, written by webhook-ingest
  status text not null default 'pending'
    check (status in ('pending', 'queued', 'training', 'completed', 'failed', 'cancelled')),
  progress double precision default 0.0 check (progress >= 0 and progress <= 100),
  current_epoch integer,

  -- Metrics: loss is the box loss of the latest epoch; metrics the last callback's metrics
  loss double precision,
  metrics jsonb,

  -- Results: model_url is a signed link that expires (7 days by default); trainhook's
  -- GET /api/v1/jobs/{id}/model gives a fresh one
  model_url text,
  error_message text,

  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  started_at timestamptz,
  completed_at timestamptz
);

create index if not exists idx_training_jobs_user_id on public.training_jobs (user_id);
create index if not exists idx_training_jobs_status on public.training_jobs (status);
create index if not exists idx_training_jobs_created_at on public.training_jobs (created_at desc);

alter table public.training_jobs enable row level security;

drop policy if exists "Users can view their own jobs" on public.training_jobs;
create policy "Users can view their own jobs"
  on public.training_jobs for select
  using (auth.uid() = user_id);

drop policy if exists "Users can create their own jobs" on public.training_jobs;
create policy "Users can create their own jobs"
  on public.training_jobs for insert
  with check (auth.uid() = user_id);

-- Realtime: the app's pages follow their job's row as callbacks update it.
alter table public.training_jobs replica identity full;
do $$
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime')
    and not exists (
      select 1 from pg_publication_tables
      where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'training_jobs'
    ) then
    alter publication supabase_realtime add table public.training_jobs;
  end if;
end
$$;

-- One row per callback applied, keyed by its webhook-id (the same on every retry and on a
-- manual redelivery): a repeat is answered 2xx and changes nothing.
create table if not exists public.training_webhook_events (
  id text primary key,
  job_id uuid not null references public.training_jobs (id) on delete cascade,
  type text not null check (type in ('training_progress', 'training_completed', 'training_failed')),
  received_at timestamptz not null default now()
);

create index if not exists idx_training_webhook_events_job_id on public.training_webhook_events (job_id);

-- Written by the function with the service role only: no policy gives anyone else access.
alter table public.training_webhook_events enable row level security;
