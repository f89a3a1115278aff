SELECT agent.name, agent.state, agent.token_id, EXISTS (SELECT *
FROM record
WHERE record.state IN ('claimed', 'running') AND record.lease_expires_at < :b_now) AS due, (SELECT coalesce(max(sqlite_sequence.seq), :coalesce_2) AS coalesce_1
FROM sqlite_sequence
WHERE sqlite_sequence.name = :name_1) AS last_run
FROM agent
WHERE agent.id = :b_agent;

UPDATE record SET state=:state, attempts=(record.attempts + :attempts_1), agent_id=:b_agent, lease_expires_at=:b_expires, updated_at=:b_now WHERE record.id IN (SELECT record.id
FROM record
WHERE record.state = 'ready' AND (record.not_before IS NULL OR record.not_before <= :b_now) ORDER BY record.priority DESC, record.id
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

INSERT INTO run (id, record_id, agent_id, token, attempt, state, claimed_at) VALUES (:b_id, :b_record_id, :b_agent, :b_token, :b_attempt, :state, :b_claimed_at);

UPDATE record SET run_id=(SELECT max(run.id) AS max_1
FROM run
WHERE run.record_id = record.id) WHERE record.id IN (SELECT value FROM json_each(:b_ids));

UPDATE campaign SET started_at=:b_now WHERE campaign.id IN (SELECT value FROM json_each(:b_ids)) AND campaign.started_at IS NULL;

