"""The database: engine and unit of work, typed models, migrations, the audit log, the once table."""  # noqa: E501
