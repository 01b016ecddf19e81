from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("workers_app", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="queue",
            options={
                "default_permissions": ("view",),
                "managed": False,
                "permissions": [
                    ("pause_queue", "Can pause and resume queues"),
                    ("purge_queue", "Can purge queues (cancel their pending tasks)"),
                ],
            },
        ),
    ]
