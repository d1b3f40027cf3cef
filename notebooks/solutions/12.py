# Expand: phone next to phone_number, nullable (the old version inserts rows without it).
ch.add_column("UserProfile", "phone = Column(String, nullable=True)")
ch.alembic('revision --autogenerate -m "expand phone"')
# Autogenerate wrote the add_column. The trigger is yours: the old code never writes phone, so only the
# database can copy its writes across (and the new code's back to phone_number).
ch.rewrite_revision(
    upgrade='''op.add_column('user_profiles', sa.Column('phone', sa.String(), nullable=True))
op.execute("""
CREATE OR REPLACE FUNCTION user_profiles_sync_phone() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.phone := coalesce(NEW.phone, NEW.phone_number);
        NEW.phone_number := coalesce(NEW.phone_number, NEW.phone);
    ELSIF NEW.phone_number IS DISTINCT FROM OLD.phone_number THEN
        NEW.phone := NEW.phone_number;
    ELSIF NEW.phone IS DISTINCT FROM OLD.phone THEN
        NEW.phone_number := NEW.phone;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql""")
op.execute("CREATE TRIGGER sync_phone BEFORE INSERT OR UPDATE ON user_profiles "
           "FOR EACH ROW EXECUTE FUNCTION user_profiles_sync_phone()")''',
    downgrade="""op.execute("DROP TRIGGER sync_phone ON user_profiles")
op.execute("DROP FUNCTION user_profiles_sync_phone()")
op.drop_column('user_profiles', 'phone')""",
)
ch.alembic("upgrade head")
# Backfill the rows there were, in batches by primary key (each row read once), each batch committed on its own;
# the WHERE skips filled rows, so it is safe to run again.
ch.alembic('revision -m "backfill phone"')
ch.rewrite_revision(
    upgrade="""import time

bind = op.get_bind()
last = bind.execute(sa.text("SELECT max(id) FROM user_profiles")).scalar() or 0
with op.get_context().autocommit_block():
    for start in range(0, last, 1000):
        bind.execute(sa.text(
            "UPDATE user_profiles SET phone = phone_number "
            "WHERE id > :start AND id <= :start + 1000 AND phone IS NULL AND phone_number IS NOT NULL"
        ), {"start": start})
        time.sleep(0.01)  # a breath between batches""",
    downgrade="pass  # nothing to undo: phone holds copies, and the expand's downgrade drops it",
)
ch.alembic("upgrade head")
