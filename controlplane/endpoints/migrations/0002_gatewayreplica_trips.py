from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('endpoints', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='gatewayreplica',
            name='trips',
            field=models.JSONField(blank=True, default=list, help_text='Guard trips it reported (gateway/guard.py), each as reported plus received_at; the newest kept.'),
        ),
    ]
