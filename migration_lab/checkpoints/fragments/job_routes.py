

# --- jobs: chapters 14 and 15 add them, so the lab's traffic reads and writes job_entries too


class JobIn(BaseModel):
    prompt: str


@app.get("/profiles/{user_id}/jobs")
def list_jobs(user_id: int, session: Session = Depends(get_session)) -> list[dict]:
    try:
        jobs = session.scalars(
            select(JobEntry).where(JobEntry.user_id == user_id).order_by(JobEntry.id.desc()).limit(5)
        ).all()
    except ProgrammingError as error:
        raise _schema_error(error) from error
    return [{"id": job.id, "prompt": job.prompt, "state": job.state} for job in jobs]


@app.post("/profiles/{user_id}/jobs", status_code=201)
def create_job(user_id: int, body: JobIn, session: Session = Depends(get_session)) -> dict:
    job = JobEntry(user_id=user_id, prompt=body.prompt, reviewer_id=user_id)
    session.add(job)
    try:
        session.commit()
    except IntegrityError as error:
        raise HTTPException(404, f"no profile {user_id}") from error
    except ProgrammingError as error:
        raise _schema_error(error) from error
    return {"id": job.id}
