"""The scheduler's database side (app label ``pygigo_scheduling``): admin-editable schedules,
the leader lease and the per-slot run records, and the store the platform's scheduler uses."""
