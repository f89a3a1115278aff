UPDATE record SET state=:state::VARCHAR, attempts=(record.attempts + :attempts_1::INTEGER), agent_id=:b_agent::INTEGER, run_id=nextval(pg_get_serial_sequence(:pg_get_serial_sequence_1, :pg_get_serial_sequence_2::VARCHAR)), lease_expires_at=:b_expires::TIMESTAMP WITHOUT TIME ZONE, updated_at=:b_now::TIMESTAMP WITHOUT TIME ZONE WHERE record.id IN (SELECT record.id
FROM record
WHERE record.state = 'ready' AND (record.not_before IS NULL OR record.not_before <= :b_now::TIMESTAMP WITHOUT TIME ZONE) AND record.campaign_id = :b_campaign::INTEGER AND (record.cores IS NULL OR record.cores <= :b_cores) AND record.dataset = ANY (:b_datasets::TEXT[]) AND (record.gpus IS NULL OR record.gpus <= :b_gpus::INTEGER) AND (record.memory_mb IS NULL OR record.memory_mb <= :b_memory_mb::INTEGER) AND record.runner = ANY (:b_runners::TEXT[]) AND (record.walltime IS NULL OR record.walltime <= :b_walltime) ORDER BY record.priority DESC, record.id
 LIMIT :b_limit FOR UPDATE SKIP LOCKED) RETURNING record.id, record.campaign_id, record.key, record.command, record.params, record.run_args, record.temporary_run_args, record.attempts, record.priority, record.run_id, EXISTS (SELECT *
FROM record_parent
WHERE record_parent.record_id = record.id) AS has_parents, EXISTS (SELECT *
FROM record_input
WHERE record_input.record_id = record.id) AS has_inputs, EXISTS (SELECT *
FROM checkpoint
WHERE checkpoint.record_id = record.id) AS has_checkpoint, (SELECT campaign.defaults
FROM campaign
WHERE campaign.id = record.campaign_id) AS defaults, (SELECT campaign.started_at
FROM campaign
WHERE campaign.id = record.campaign_id) IS NULL AS unstarted;

