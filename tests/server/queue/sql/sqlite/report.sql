SELECT record.id, record."key", record.state, record.attempts, record.max_attempts, record.error, record.campaign_id, record.temporary_run_args IS NOT NULL AS has_temporary
FROM record
WHERE record.id IN (SELECT run.record_id
FROM run
WHERE run.id IN (SELECT value FROM json_each(:b_runs))) ORDER BY record.id;

SELECT run.id, run.record_id, run.token, run.state, run.report, run.claimed_at, run.started_at, (SELECT agent.token_id
FROM agent
WHERE agent.id = run.agent_id) AS agent_token
FROM run
WHERE run.id IN (SELECT value FROM json_each(:b_runs)) ORDER BY run.id;

UPDATE record SET state=:b_state, attempts=(record.attempts - :b_given_back), error=:b_error, agent_id=:agent_id, lease_expires_at=:lease_expires_at, updated_at=:b_now WHERE record.id IN (SELECT value FROM json_each(:b_ids)) RETURNING id, EXISTS (SELECT *
FROM record_parent
WHERE parent_id = record.id) AS has_children;

UPDATE run SET state=:b_state, started_at=:b_started_at, ended_at=:b_now, exit_code=:b_exit_code, error=:b_error, stdout_tail=:b_stdout_tail, stderr_tail=:b_stderr_tail, report=:b_report, archive=:b_archive WHERE run.id = :b_id;

INSERT INTO record_result (record_id, run_id, document) VALUES (:b_record_id, :b_run_id, :b_document) ON CONFLICT (record_id) DO UPDATE SET run_id = excluded.run_id, document = excluded.document;

SELECT record.id
FROM record
WHERE record.campaign_id = :b_campaign AND record.state IN ('claimed', 'orphaned', 'ready', 'running', 'waiting')
 LIMIT :param_1 OFFSET :param_2;

