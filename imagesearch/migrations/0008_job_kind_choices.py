from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("imagesearch", "0007_job_progress_at"),
    ]

    operations = [
        migrations.AlterField(
            model_name="job",
            name="kind",
            field=models.CharField(
                choices=[
                    ("import_images", "Import"),
                    ("refresh_embeddings", "Embedding refresh"),
                    ("prepare_pretrained", "Pretrained model"),
                    ("train_autoencoder", "Autoencoder training"),
                    ("train_ranking", "Deep-ranking training"),
                ],
                db_index=True,
                max_length=50,
            ),
        ),
    ]
