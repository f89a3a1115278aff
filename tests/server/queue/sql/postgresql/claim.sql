SELECT agent.name, agent.state, agent.token_id, EXISTS (SELECT *
FROM record
WHERE record.state IN ('claimed', 'running') AND record.lease_expires_at < :b_now::TIMESTAMP WITHOUT TIME ZONE) AS due
FROM agent
WHERE agent.id = :b_agent::INTEGER;

UPDATE record SET state=:state::VARCHAR, attempts=(record.attempts + :attempts_1::INTEGER), agent_id=:b_agent::INTEGER, run_id=nextval(pg_get_serial_sequence(:pg_get_serial_sequence_1, :pg_get_serial_sequence_2::VARCHAR)), lease_expires_at=:b_expires::TIMESTAMP WITHOUT TIME ZONE, updated_at=:b_now::TIMESTAMP WITHOUT TIME ZONE WHERE record.id IN (SELECT record.id
FROM record
WHERE record.state = 'ready' AND (record.not_before IS NULL OR record.not_before <= :b_now::TIMESTAMP WITHOUT TIME ZONE) ORDER BY record.priority DESC, record.id
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

INSERT INTO run (id, record_id, token, attempt, agent_id, state, claimed_at) SELECT anon_1.id, anon_1.record_id, anon_1.token, anon_1.attempt, :b_agent AS anon_2, :param_1::VARCHAR AS anon_3, :b_claimed_at::TIMESTAMP WITHOUT TIME ZONE AS anon_4
FROM unnest(:b_id::INTEGER[], :b_record_id::INTEGER[], :b_token::TEXT[], :b_attempt::INTEGER[]) AS anon_1(id, record_id, token, attempt);

UPDATE campaign SET started_at=:b_now::TIMESTAMP WITHOUT TIME ZONE WHERE campaign.id = ANY (:b_ids::INTEGER[]) AND campaign.started_at IS NULL;

