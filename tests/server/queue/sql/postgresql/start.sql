UPDATE record SET state=:b_state::VARCHAR, updated_at=:b_now::TIMESTAMP WITHOUT TIME ZONE WHERE record.id = :b_id::INTEGER;

UPDATE run SET state=:state::VARCHAR, started_at=:b_now::TIMESTAMP WITHOUT TIME ZONE WHERE run.id = :b_id::INTEGER;

