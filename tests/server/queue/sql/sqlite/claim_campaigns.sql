UPDATE record SET state=:state, attempts=(record.attempts + :attempts_1), agent_id=:b_agent, lease_expires_at=:b_expires, updated_at=:b_now WHERE record.id IN (SELECT record.id
FROM record
WHERE record.state = 'ready' AND (record.not_before IS NULL OR record.not_before <= :b_now) AND record.campaign_id IN (SELECT value FROM json_each(:b_campaigns)) AND (record.cores IS NULL OR record.cores <= :b_cores) AND record.dataset IN (SELECT value FROM json_each(:b_datasets)) AND (record.gpus IS NULL OR record.gpus <= :b_gpus) AND (record.memory_mb IS NULL OR record.memory_mb <= :b_memory_mb) AND record.runner IN (SELECT value FROM json_each(:b_runners)) AND (record.walltime IS NULL OR record.walltime <= :b_walltime) ORDER BY record.priority DESC, record.id
 LIMIT :b_limit OFFSET :param_1) RETURNING id, campaign_id, "key", command, params, run_args, temporary_run_args, attempts, priority, run_id, EXISTS (SELECT *
FROM record_parent
WHERE record_id = record.id) AS has_parents, EXISTS (SELECT *
FROM record_input
WHERE record_id = record.id) AS has_inputs, EXISTS (SELECT *
FROM checkpoint
WHERE record_id = record.id) AS has_checkpoint, (SELECT campaign.defaults
FROM campaign
WHERE id = record.campaign_id) AS defaults, (SELECT campaign.started_at
FROM campaign
WHERE id = record.campaign_id) IS NULL AS unstarted;

