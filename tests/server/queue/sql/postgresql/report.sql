SELECT record.id, record.key, record.state, record.attempts, record.max_attempts, record.error, record.campaign_id, record.temporary_run_args IS NOT NULL AS has_temporary
FROM record
WHERE record.id IN (SELECT run.record_id
FROM run
WHERE run.id = ANY (:b_runs::INTEGER[])) ORDER BY record.id FOR UPDATE;

SELECT run.id, run.record_id, run.token, run.state, run.report, run.claimed_at, run.started_at, (SELECT agent.token_id
FROM agent
WHERE agent.id = run.agent_id) AS agent_token
FROM run
WHERE run.id = ANY (:b_runs::INTEGER[]) ORDER BY run.id FOR UPDATE;

UPDATE record SET state=:b_state::VARCHAR, attempts=(record.attempts - :b_given_back::INTEGER), error=:b_error::VARCHAR, agent_id=:agent_id::INTEGER, lease_expires_at=:lease_expires_at::TIMESTAMP WITHOUT TIME ZONE, updated_at=:b_now::TIMESTAMP WITHOUT TIME ZONE WHERE record.id = ANY (:b_ids::INTEGER[]) RETURNING record.id, EXISTS (SELECT *
FROM record_parent
WHERE record_parent.parent_id = record.id) AS has_children;

UPDATE run SET state=anon_1.state, started_at=anon_1.started_at, ended_at=:b_now::TIMESTAMP WITHOUT TIME ZONE, exit_code=anon_1.exit_code, error=anon_1.error, stdout_tail=anon_1.stdout_tail, stderr_tail=anon_1.stderr_tail, report=anon_1.report, archive=anon_1.archive FROM unnest(:b_id::INTEGER[], :b_state::TEXT[], :b_started_at::TIMESTAMP WITHOUT TIME ZONE[], :b_exit_code::INTEGER[], :b_error::TEXT[], :b_stdout_tail::TEXT[], :b_stderr_tail::TEXT[], :b_report::TEXT[], :b_archive::TEXT[]) AS anon_1(id, state, started_at, exit_code, error, stdout_tail, stderr_tail, report, archive) WHERE run.id = anon_1.id;

INSERT INTO record_result (record_id, run_id, document) SELECT anon_1.record_id, anon_1.run_id, CAST(anon_1.document AS JSON) AS document
FROM unnest(:b_record_id::INTEGER[], :b_run_id::INTEGER[], :b_document::TEXT[]) AS anon_1(record_id, run_id, document) ON CONFLICT (record_id) DO UPDATE SET run_id = excluded.run_id, document = excluded.document;

SELECT campaign.id
FROM campaign
WHERE campaign.id IN (__[POSTCOMPILE_b_campaigns]) ORDER BY campaign.id FOR NO KEY UPDATE;

SELECT record.id
FROM record
WHERE record.campaign_id = :b_campaign::INTEGER AND record.state IN ('claimed', 'orphaned', 'ready', 'running', 'waiting')
 LIMIT :param_1::INTEGER;

