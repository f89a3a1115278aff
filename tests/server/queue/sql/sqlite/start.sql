UPDATE record SET state=:b_state, updated_at=:b_now WHERE record.id = :b_id;

UPDATE run SET state=:state, started_at=:b_now WHERE run.id = :b_id;

